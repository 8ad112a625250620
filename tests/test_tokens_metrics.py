import subprocess
import sys

import pytest

from optimem import InputError, tokens
from optimem.reading.fidelity import edit_distance, fidelity, normalise
from optimem.tokens import count_tokens


def test_counts_offline_with_both_encodings():
    assert count_tokens("hello world") == 2
    assert count_tokens("hello world", "cl100k_base") == 2
    assert count_tokens("") == 0
    # o200k packs Chinese tighter than cl100k
    zh = "我们明天在成都见面，然后去吃火锅。"
    assert count_tokens(zh) < count_tokens(zh, "cl100k_base")


def test_special_tokens_are_counted_as_text():
    assert count_tokens("<|endoftext|>") > 1


def test_a_fresh_cache_is_filled_from_the_wheel_without_importing_it(tmp_path):
    """The encoding files come out of bpe-openai's data folder; importing bpe_openai itself
    would parse all three of its encodings first."""
    code = (
        "import sys; from optimem.tokens import count_tokens; "
        "print(count_tokens('hello world'), 'bpe_openai' in sys.modules)"
    )
    env = {"OPTIMEM_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "False"]
    assert len(list((tmp_path / "tiktoken").iterdir())) == 1  # o200k_base, under tiktoken's name


def test_without_the_wheel_the_error_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tokens.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InputError, match="pip install bpe-openai"):
        tokens._install_encoding("o200k_base", tmp_path)


def test_unknown_encoding():
    with pytest.raises(InputError, match="unknown encoding"):
        count_tokens("x", "gpt2")


def test_fidelity_by_hand():
    assert normalise("  a \n b\t c ") == "a b c"
    assert edit_distance("kitten", "sitting") == 3
    assert fidelity("hello world", "hello world") == 1.0
    assert fidelity("helo world", "hello world") == pytest.approx(1 - 1 / 11)
    assert fidelity("hello\n  world", "hello world") == 1.0
    assert fidelity("", "abcd") == 0.0
    assert fidelity("something much longer than the source", "ab") == 0.0
    assert fidelity("", "") == 1.0
    assert fidelity("x", "") == 0.0
