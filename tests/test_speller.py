"""The spelling index: the same near words as symspellpy, built once, loaded from the cache."""

from __future__ import annotations

import time

import pytest

from optimem.aids import speller as speller_module
from optimem.aids.speller import Speller, dictionary_path, speller

# OCR misreads of 8 px type seen on LoCoMo pages (conversations 26 and 30)
MISREADS = [
    "sround",
    "slways",
    "sbout",
    "grest",
    "wes",
    "reslice",
    "passionste",
    "ozcar",
    "mountsins",
    "lsct",
    "iske",
    "quines",
    "fek",
    "plece",
    "oina",
    "thankst",
]


@pytest.fixture(scope="module")
def symspell():
    from symspellpy import SymSpell

    s = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
    s.load_dictionary(dictionary_path(), term_index=0, count_index=1)
    return s


@pytest.mark.slow  # symspellpy, the oracle, builds its own index (~3 s)
@pytest.mark.parametrize("word", MISREADS)
def test_near_words_are_symspells_in_its_order(symspell, word):
    from symspellpy import Verbosity

    want = [(s.term, s.distance) for s in symspell.lookup(word, Verbosity.ALL, 2)]
    got = [(s.term, s.distance) for s in speller().near(word)]
    assert got[:8] == want[:8]
    assert {t for t, _ in got} == {t for t, _ in want}


def test_a_known_word_is_its_own_nearest():
    near = speller().near("piece")
    assert near[0].term == "piece" and near[0].distance == 0


def test_glued_words_split_into_the_likeliest_known_words():
    s = speller()
    assert s.segment("startingmy") == ["starting", "my"]
    assert s.segment("forthe") == ["for", "the"]
    assert s.segment("xqzv") == ["xqzv"]  # no split into known words: the run itself


@pytest.mark.slow
def test_the_index_is_built_once_then_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTIMEM_CACHE_DIR", str(tmp_path))
    speller_module._speller_for.cache_clear()
    try:
        built = speller()
        folders = list(tmp_path.glob("speller-*/index"))
        assert len(folders) == 1 and (folders[0] / "keys.npy").stat().st_size > 1_000_000
        speller_module._speller_for.cache_clear()
        t0 = time.perf_counter()
        loaded = speller()
        assert time.perf_counter() - t0 < 2.0  # loading maps arrays; building takes seconds
        assert loaded is not built and loaded.words == built.words
        assert [s.term for s in loaded.near("plece")] == [s.term for s in built.near("plece")]
    finally:
        speller_module._speller_for.cache_clear()


@pytest.mark.slow
def test_an_unwritable_cache_still_gives_a_speller(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OPTIMEM_CACHE_DIR", str(blocker))
    speller_module._speller_for.cache_clear()
    try:
        s = speller()
        assert s.near("plece")[0].term == "place"
    finally:
        speller_module._speller_for.cache_clear()


def test_build_reads_word_count_lines(tmp_path):
    dictionary = tmp_path / "d.txt"
    dictionary.write_text("the 100\ncat 5\ncart 3\n")
    s = Speller.build(dictionary)
    assert [n.term for n in s.near("cst")] == ["cat", "cart"]
