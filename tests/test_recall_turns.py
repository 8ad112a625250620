"""Whole turns back: stitched over pages, wraps removed, the turn's own line breaks kept."""

from __future__ import annotations

import pytest

from optimem import OpticalMemory
from optimem.errors import InputError, TurnNotFound
from optimem.layout import LineBox
from optimem.pages.typeset import RenderOptions, TurnText, paginate
from optimem.reading.recall import stitch


def _rows(content: str, canvas: int = 640):
    pages = paginate([TurnText(1, "user", content)], RenderOptions(canvas=canvas, font_px=8))
    return [(box, box.text) for page in pages for box in page.lines]


def test_stitching_the_typeset_rows_gives_the_turn_back():
    content = (
        "First paragraph, short.\nSecond one " + "runs on and on " * 30 + "\n\nAfter a blank line.\nlast"
    )
    rows = _rows(content)
    assert len(rows) > 3  # it wraps
    # what a page cannot show: spaces at the ends of lines
    assert stitch(rows, "user:") == "\n".join(line.rstrip() for line in content.split("\n"))


def test_code_rows_keep_their_breaks_and_a_split_word_joins_again():
    content = "Run this:\n```\nfor i in range(3):\n    print(i)\n```\n" + "x" * 300
    assert stitch(_rows(content), "user:") == content


def test_a_label_misread_is_still_left_out():
    box = LineBox(0, 0, 10, 10, "user: hello", 1, 0, 5)
    assert stitch([(box, "usen; hello")], "user:") == "hello"


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    mem = OpticalMemory(
        tmp_path_factory.mktemp("turns") / "m.db", backend="cpu", decode="lazy", keep_recent_turns=1
    )
    yield mem
    mem.close()


@pytest.mark.slow
def test_a_turn_over_two_pages_comes_back_whole_through_the_real_ocr(memory):
    s = memory.session("t/turns")
    long = "\n".join(
        f"Step {i}: we moved the replica in region eu-west and checked the backups twice before lunch."
        for i in range(170)
    )
    ids = s.add_turns(
        [("user", "Can you summarise the migration plan?"), ("assistant", long), ("user", "thanks")]
    )
    s.compress(flush=True)
    (later,) = s.add_turns([("user", "thanks again")])
    holding = [p.id for p in s.pages() if ids[1] in p.turn_ids]
    assert len(holding) >= 2  # the turn is split over pages
    first, second, last = s.recall_turns([ids[0], ids[1], later])
    assert second.pages == tuple(holding) and second.role == "assistant"
    assert second.text.count("\n") == 169  # its own line breaks, and only those
    got, want = second.text.split("\n"), long.split("\n")
    exact = sum(a == b for a, b in zip(got, want, strict=True))
    assert exact >= 150  # the cpu decoder reads 8 px type; unverified lines may differ
    assert (second.verified is True) == (second.text == long)
    assert first.text == "Can you summarise the migration plan?" or first.verified is False
    assert last.pages == () and last.text == "thanks again" and last.verified is None  # not paged yet


def test_unknown_turn_ids_are_refused(memory):
    s = memory.session("t/none")
    s.add_turns([("user", "hi")])
    with pytest.raises(TurnNotFound, match="no turn 999"):
        s.recall_turns([999])
    with pytest.raises(InputError):
        s.recall_turns(["1"])  # type: ignore[list-item]
