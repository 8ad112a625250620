"""The viewer's pure parts, checked by hand: word diffs, repair marks, fidelity, the token series and its ticks."""

from __future__ import annotations

from datetime import UTC, datetime

from optimem import Mode, Page, Turn
from optimem.server.ui import chart, diff


def test_tokens_join_back_to_the_text():
    text = "Ticket OPS-4821,  due\n02:00 UTC."
    assert "".join(diff.tokens(text)) == text


def test_source_diff_marks_missed_misread_and_extra_words():
    segments = diff.source_diff(
        recalled="the quick brwn fox jumps jumps", source="the quick brown fox jumps over"
    )
    assert segments == [
        {"op": "same", "text": "the quick "},
        {"op": "misread", "text": "brown", "read": "brwn"},
        {"op": "same", "text": " fox jumps "},
        {"op": "misread", "text": "over", "read": "jumps"},
    ]
    assert diff.source_diff("a b", "a b c") == [{"op": "same", "text": "a b "}, {"op": "missed", "text": "c"}]
    assert diff.source_diff("a b zz", "a b") == [{"op": "same", "text": "a b"}, {"op": "extra", "text": "zz"}]


def test_whitespace_is_no_difference_as_in_the_fidelity_metric():
    assert diff.source_diff("a b\nc ", "a\nb  c") == [{"op": "same", "text": "a\nb  c"}]
    assert diff.measured("a b\nc ", "a b\nc ", "a\nb  c") == {"recalled": 1.0, "raw": 1.0}


def test_repairs_mark_what_the_side_channel_restored():
    assert diff.repairs("same text", "same text") == [{"op": "same", "text": "same text"}]
    assert diff.repairs("ticket 0PS-4B21 now", "ticket OPS-4821 now") == [
        {"op": "same", "text": "ticket "},
        {"op": "repair", "text": "OPS", "read": "0PS"},
        {"op": "same", "text": "-"},
        {"op": "repair", "text": "4821", "read": "4B21"},
        {"op": "same", "text": " now"},
    ]


def test_measured_fidelity_of_recalled_and_raw_text():
    assert diff.measured("abcd", "abxd", None) is None
    assert diff.measured("abcd", "abxd", "abcd") == {"recalled": 1.0, "raw": 0.75}


def _turn(i: int, tokens: int, paged: bool) -> Turn:
    return Turn(id=10 + i, role="user", content="x", seq=i, text_tokens=tokens, paged=paged)


def _page(pid: int, turn_ids: tuple[int, ...], mode: Mode, positions: int) -> Page:
    now = datetime.now(UTC)
    return Page(pid, mode, Mode.SMALL, turn_ids, 0, positions, 0, now, None, 8, mode.canvas)


def test_series_counts_pages_at_their_positions_when_their_last_turn_is_reached():
    turns = [_turn(0, 100, True), _turn(1, 100, True), _turn(2, 100, True), _turn(3, 50, False)]
    pages = [_page(1, (10, 11), Mode.TINY, 73), _page(2, (11, 12), Mode.SMALL, 111)]  # turn 11 spans both
    data = chart.series(turns, pages)
    assert data["full"] == [100, 200, 300, 350]
    assert data["seen"] == [0, 73, 184, 234]
    assert data["bands"] == [
        {"from": 1, "to": 2, "mode": "tiny", "page_id": 1},
        {"from": 2, "to": 3, "mode": "small", "page_id": 2},
        {"from": 4, "to": 4, "mode": "text", "page_id": None},
    ]
    g = chart.geometry(data, budget=300)
    assert g["full"].count(",") == 4 and g["budget"]["label"] == "budget 300"
    assert [t["label"] for t in g["y_ticks"]] == ["0", "100", "200", "300"]
    assert g["last"] == {"full": 350, "seen": 234}


def test_ticks_are_round_numbers():
    assert chart._ticks(10_488) == [0, 5000, 10000]
    assert chart._ticks(0) == [0]


def test_long_series_are_thinned_for_drawing_but_keep_the_last_turn():
    data = {"turns": 1000, "full": list(range(1000)), "seen": list(range(1000)), "bands": []}
    g = chart.geometry(data)
    points = g["full"].split()
    assert len(points) == 334  # every third turn (0, 3, …, 999), the last among them
    assert points[-1].startswith(f"{chart.WIDTH - chart.RIGHT}.0,")
