"""Proofreading through the real cpu OCR: an aged page read with and without its reading aids."""

from __future__ import annotations

import pytest

from optimem import Mode, OpticalMemory
from optimem.aging.policies import BudgetPolicy
from optimem.aids import linecheck

TURNS = [
    ("user", "Hey Gina! Good to see you too. Lost my job as a banker yesterday, so I'm gonna take a "
             "shot at starting my own business."),
    ("assistant", "Sorry about your job Jon, but starting your own business sounds awesome! "
                  "Unfortunately, I also lost my job at Door Dash this month."),
    ("user", "Sorry to hear that! I'm starting a dance studio 'cause I'm passionate about dancing and "
             "it'd be great to share it with others. We drove to Banff last spring and heard Brave by "
             "Sara Bareilles on the way."),
    ("assistant", "Thanks a bunch! It's awesome seeing my vision happen. How's the dance studio going? "
                  "Did you find the right spot near a park or woods?"),
]  # fmt: skip


def aged_page(path, reading_aids, backend="cpu"):
    mem = OpticalMemory(path, backend=backend, decode="lazy", keep_recent_turns=0, creation_mode=Mode.SMALL,
                        policy=BudgetPolicy(max_tokens=60), reading_aids=reading_aids)  # fmt: skip
    s = mem.session("p")
    s.add_turns([(role, text) for role, text in TURNS])
    s.compress(flush=True)
    (page,) = s.pages()
    assert page.mode is Mode.TINY  # a Small page aged one rung: 8 px type read at 6.4 px
    return mem, s, page


def word_errors(recalled: dict[int, str], truth: list[str]) -> int:
    import difflib

    got = linecheck.line_words(" ".join(recalled.values()))
    want = linecheck.line_words(" ".join(truth))
    matcher = difflib.SequenceMatcher(None, want, got, autojunk=False)
    return len(want) - sum(b.size for b in matcher.get_matching_blocks())


@pytest.mark.slow
def test_aids_make_aged_lines_exact_and_say_how_many(tmp_path):
    from optimem.backends.cpu import CpuBackend
    from optimem.backends.rapidocr import RapidOCRBackend

    # the line model reads this page's words all right unaided (below); rapidocr, which read
    # aged pages before it, misreads some, so the aids have something to mend
    rapid = RapidOCRBackend()
    engine = CpuBackend(cjk=rapid, blurred=rapid)
    truth = [text for _, text in TURNS]
    plain_mem, plain, page = aged_page(tmp_path / "plain.db", reading_aids=False, backend=engine)
    raw = plain.recall_page(page.id)
    assert raw.lines_checked == 0 and raw.lines_exact == 0
    aided_mem, aided, page = aged_page(tmp_path / "aided.db", reading_aids=True, backend=engine)
    got = aided.recall_page(page.id)
    layout = aided_mem.store.page_blobs(page.id).layout
    assert got.lines_checked == len(layout) == len(got.raw_text.split("\n"))
    # every line it calls exact is exact, word for word
    exact = [linecheck.line_words(line) == linecheck.line_words(box.text)
             for line, box in zip(got.raw_text.split("\n"), layout, strict=True)]  # fmt: skip
    assert sum(exact) == got.lines_exact
    assert got.lines_exact > len(layout) // 2
    before, after = word_errors(raw.turns, truth), word_errors(got.turns, truth)
    assert after < before, (before, after)
    # the side channel is counted, and stays small: checks and rare words, a few % of the text
    assert 0 < got.side_channel_bytes < 0.10 * sum(len(t) for t in truth)
    assert [v.kind for v in got.verbatim if v.kind in ("lines", "lexicon")] == []
    plain_mem.close()
    aided_mem.close()


@pytest.mark.slow
def test_the_line_model_reads_an_aged_page_at_least_as_well_unaided(tmp_path):
    from optimem.backends.cpu import CpuBackend
    from optimem.backends.rapidocr import RapidOCRBackend

    truth = [text for _, text in TURNS]
    mem, session, page = aged_page(tmp_path / "plain.db", reading_aids=False)
    raw = session.recall_page(page.id)
    rapid = RapidOCRBackend()
    old_mem, old, old_page = aged_page(
        tmp_path / "old.db", reading_aids=False, backend=CpuBackend(cjk=rapid, blurred=rapid)
    )
    assert word_errors(raw.turns, truth) <= word_errors(old.recall_page(old_page.id).turns, truth)
    mem.close()
    old_mem.close()
