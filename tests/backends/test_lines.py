"""Line geometry of the CPU backends: expected character counts, word-gap merging, indentation."""

from __future__ import annotations

from optimem.backends import _lines
from optimem.backends._lines import expected_chars, merge_spaces, misfit
from optimem.layout import LineBox
from optimem.render import RenderOptions, TurnText, paginate


def _box(start: int, end: int) -> LineBox:
    return LineBox(0, 0, 10, 10, "", 1, start, end)


def test_expected_chars_come_from_offsets_and_allow_a_label_on_a_turns_first_line():
    assert expected_chars([_box(0, 20), _box(20, 50)]) == [(25, 60), (29, 30)]
    assert misfit("x" * 29, (29, 30)) == 0
    assert misfit("x" * 27, (29, 30)) == 2
    assert misfit("  " + "x" * 33 + " ", (29, 30)) == 3  # stripped before counting


def test_merge_spaces_adds_the_gaps_either_reading_agrees_on():
    assert merge_spaces("getinvolved in the", "get involved in the") == "get involved in the"
    assert merge_spaces("wantto pass", "want te pass") == "want to pass"  # letters from the first
    assert merge_spaces("took them", "tcok them") == "took them"
    # a gap whose neighbours the readings disagree on is left out ("i t's")
    assert merge_spaces("it's a lot", "k's a lot") == "it's a lot"


def test_indent_is_read_from_where_the_ink_starts():
    code = "```\ndef f(x):\n    if x:\n        return 1\n  y = 2\n```"
    (page,) = paginate([TurnText(1, "user", code)], RenderOptions(canvas=640, font_px=8))
    gray = _lines.as_gray(page.image)
    got = [
        (_lines.indent(gray, box, 8.0), len(box.text) - len(box.text.lstrip(" ")))
        for box in page.lines
        if box.kind == "code"
    ]
    assert [g for g, _ in got] == [e for _, e in got] and {e for _, e in got} == {0, 2, 4, 8}
