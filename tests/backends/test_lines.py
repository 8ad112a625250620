"""Line geometry of the CPU backends: expected character counts, word-gap merging, indentation."""

from __future__ import annotations

from optimem.backends import _lines
from optimem.backends._lines import expected_chars, merge_spaces, misfit
from optimem.layout import LineBox
from optimem.pages.typeset import RenderOptions, TurnText, paginate


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


def _cols(template: str) -> list[bool]:
    return [c != " " for c in template]


def test_as_typed_puts_back_the_whitespace_the_columns_show():
    cols = _cols("  let next = 0;")
    for reading in ("let next = 0;", "letnext=0;", "let next = 0 ;", "  let  next =0;"):
        assert _lines.as_typed(reading, cols) == "  let next = 0;"
    assert _lines.as_typed("split whitespace()", _cols("split_whitespace()")) == "split_whitespace()"
    assert _lines.as_typed("service", _cols("| service")) == " service"  # a dropped glyph stays out
    assert _lines.as_typed("ss -tlnp I head", _cols("ss -tlnp | head")) == "ss -tlnp | head"
    assert _lines.as_typed("LISTEN @ ‘x’", _cols("LISTEN 0 'x'")) == "LISTEN 0 'x'"


def test_as_typed_writes_tabs_only_on_rows_typeset_with_tabs():
    expanded = "ftp     21/tcp          # file"  # ftp\t21/tcp\t\t# file, stops every 8
    assert _lines.as_typed("ftp 21/tcp # file", _cols(expanded), tabs=True) == "ftp\t21/tcp\t\t# file"
    assert _lines.as_typed("ftp 21/tcp # file", _cols(expanded)) == expanded
    assert _lines.as_typed("val", _cols("        val"), tabs=True) == "\tval"
    # a gap that does not end on a stop is spaces, even on a tabbed row
    assert _lines.as_typed("a b", _cols("a  b"), tabs=True) == "a  b"


def test_ink_columns_and_cells_read_a_sharp_code_row_exactly():
    from optimem.backends import _glyphs

    src = "def f(x):\n    return {'k': [x | 0x1F, x != 2]}  # ok\n```"
    (page,) = paginate([TurnText(1, "tool", src)], RenderOptions(canvas=512, font_px=8, code_font_px=10))
    gray = _lines.as_gray(page.image)
    for box in page.lines[1:]:
        cols = _lines.ink_columns(gray, box, box.em)
        assert cols == [c != " " for c in box.text.rstrip()]
        inked = [k for k, c in enumerate(cols) if c]
        cells = _glyphs.read_cells(gray, box, box.em, inked, 8.0)
        assert "".join(c.best for c in cells) == box.text.replace(" ", "")
    # the same rows read from nothing but their cells, as a decoder that read nothing would
    box = page.lines[2]
    cols = _lines.ink_columns(gray, box, box.em)
    cells = dict(
        zip(
            [k for k, c in enumerate(cols) if c],
            _glyphs.read_cells(gray, box, box.em, [k for k, c in enumerate(cols) if c], 8.0),
            strict=True,
        )
    )
    assert _lines.as_typed("", cols, cells=cells) == box.text


def test_creation_size_is_found_from_the_row_and_the_page_size():
    from optimem.backends._glyphs import creation_size

    assert creation_size(10.0, 8.0) == (10, 1.0)
    assert creation_size(8.0, 6.4) == (10, 0.8)  # a 10 px row of an 8 px page aged one rung
    assert creation_size(8.8, 6.4) == (11, 0.8)
