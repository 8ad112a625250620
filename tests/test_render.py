import itertools

import pytest
from PIL import Image

from optimem import InputError, Mode
from optimem.layout import LineBox, restore_placeholders, tab_stop, turn_texts
from optimem.pages.typeset import RenderOptions, TurnText, paginate, resize_to

from .conftest import chat_turns


def _turns(n=12, words=80):
    return [TurnText(i + 1, role, text) for i, (role, text) in enumerate(chat_turns(n, words))]


def _covered(pages, turns):
    """Every character of every turn is on exactly one page (whitespace at breaks aside)."""
    spans = {}
    for page in pages:
        for s in page.spans:
            spans.setdefault(s.turn_id, []).append((s.start, s.end))
    for t in turns:
        ranges = sorted(spans[t.turn_id])
        assert ranges[0][0] == 0
        assert ranges[-1][1] >= len(t.content.rstrip())
        for (_, a_end), (b_start, _) in itertools.pairwise(ranges):
            assert b_start >= a_end - 1  # pages never overlap
            assert t.content[a_end:b_start].strip() == ""  # nothing skipped between pages


def test_pages_are_square_dense_and_cover_every_turn():
    turns = _turns()
    pages = paginate(turns, RenderOptions(canvas=512, font_px=10))
    assert len(pages) >= 2
    for p in pages:
        assert p.image.size == (512, 512) and p.image.mode == "L"
        assert all(0 <= b.x0 < b.x1 <= 512 and 0 <= b.y0 < b.y1 <= 512 for b in p.lines)
        # lines follow each other downwards
        assert all(a.y1 <= b.y0 for a, b in zip(p.lines, p.lines[1:], strict=False))
    # every page but the last is filled to the bottom margin
    for p in pages[:-1]:
        assert p.lines[-1].y1 > 512 - 2 * 12 - p.options.margin
    _covered(pages, turns)


def test_turn_longer_than_a_page_continues_on_the_next():
    long = TurnText(1, "user", "word " * 3000)
    pages = paginate([long], RenderOptions(canvas=512, font_px=10))
    assert len(pages) > 3
    assert all(p.turn_ids == (1,) for p in pages)
    _covered(pages, [long])


def test_labels_code_cjk_and_placeholders():
    turns = [
        TurnText(1, "user", "今天在成都吃火锅 with Chen Wei 😀 ok"),
        TurnText(2, "assistant", "Here:\n```python\ndef f(x):\n    return x * 2\n```\nDone.", name="Bot"),
    ]
    (page,) = paginate(turns, RenderOptions(canvas=640, font_px=10, cjk_font_px=12))
    assert page.lines[0].text.startswith("user: 今天在成都")
    assert "<U+1F600>" in page.text  # emoji become a readable placeholder, not tofu
    assert page.has_cjk
    code = [b for b in page.lines if b.kind == "code"]
    assert [b.text for b in code] == ["```python", "def f(x):", "    return x * 2", "```"]
    assert any(b.text.startswith("Bot (assistant): Here:") for b in page.lines)
    # CJK lines get more height than Latin ones
    heights = {b.kind: b.y1 - b.y0 for b in page.lines}
    assert page.lines[0].y1 - page.lines[0].y0 > heights["code"]
    assert restore_placeholders("smile <U+1F600>!") == "smile 😀!"


def test_controls_and_rtl_are_drawn_not_dropped():
    (page,) = paginate([TurnText(1, "user", "a\x00b\x07c שלום עולם")], RenderOptions(canvas=512, font_px=10))
    assert "<U+0000>" in page.text and "<U+0007>" in page.text
    assert "שלום" in page.text


def test_long_url_is_broken_across_lines():
    url = "https://example.com/" + "a1b2c3" * 80
    (page,) = paginate([TurnText(1, "user", url)], RenderOptions(canvas=512, font_px=10))
    assert len(page.lines) > 1
    assert "".join(b.text for b in page.lines).replace("user: ", "") == url


def test_rendering_is_deterministic():
    a = paginate(_turns(3), RenderOptions(canvas=512, font_px=9))
    b = paginate(_turns(3), RenderOptions(canvas=512, font_px=9))
    assert a[0].image.tobytes() == b[0].image.tobytes()


def test_smaller_font_holds_more_text():
    turns = _turns(20)
    small = paginate(turns, RenderOptions(canvas=512, font_px=8))
    big = paginate(turns, RenderOptions(canvas=512, font_px=12))
    assert len(small) < len(big)


def test_bad_options():
    with pytest.raises(InputError):
        RenderOptions(canvas=512, font_px=2)
    with pytest.raises(InputError):
        RenderOptions(canvas=10)


def test_resize_and_scaled_boxes():
    (page,) = paginate(_turns(1), RenderOptions(canvas=Mode.LARGE.canvas, font_px=10))
    small = resize_to(page.image, Mode.TINY.canvas)
    assert small.size == (512, 512) and isinstance(small, Image.Image)
    box = LineBox(10, 20, 110, 40, "x", 1, 0, 1)
    half = box.scaled(0.5)
    assert (half.x0, half.y0, half.x1, half.y1) == (5, 10, 55, 20)
    assert (half.text, half.turn_id) == ("x", 1)
    assert LineBox.from_json(box.to_json()) == box


def test_the_project_brings_its_own_cjk_font(monkeypatch):
    # fonts-noto-cjk from Debian may hide a missing dependency on a developer's machine
    from optimem import fonts

    monkeypatch.delenv("OPTIMEM_CJK_FONT", raising=False)
    fonts.font_files.cache_clear()
    try:
        files = fonts.font_files()
        assert files.cjk is not None and "noto_cjk_sans_otc" in str(files.cjk)
        assert files.sans.name == "DejaVuSans.ttf" and files.mono.name == "DejaVuSansMono.ttf"
    finally:
        fonts.font_files.cache_clear()


SERVICES = "tcpmux\t\t1/tcp\t\t# TCP mux\ndiscard\t9/tcp\n\nftp\t21/tcp"


def test_tab_stops_are_two_columns_at_least():
    assert [tab_stop(c) for c in (0, 5, 6, 7, 8, 15, 16)] == [8, 8, 8, 16, 16, 24, 24]


def test_tool_output_keeps_its_rows_tabs_and_own_size():
    turns = [TurnText(1, "user", "ports?"), TurnText(2, "tool", SERVICES)]
    (page,) = paginate(turns, RenderOptions(canvas=640, font_px=8, code_font_px=11))
    label, *rows = [b for b in page.lines if b.turn_id == 2]
    assert label.text == "tool: " and label.start == label.end == 0  # the label has its own row
    assert [b.kind for b in rows] == ["code"] * 3 and all(b.tabs and b.em == 11.0 for b in rows)
    assert [SERVICES[b.start : b.end] for b in rows] == [
        "tcpmux\t\t1/tcp\t\t# TCP mux",
        "discard\t9/tcp",
        "ftp\t21/tcp",
    ]
    # tabs expanded to stops, a tab never narrower than two columns ("discard" ends at 7)
    assert [b.text for b in rows] == [
        "tcpmux" + " " * 10 + "1/tcp" + " " * 11 + "# TCP mux",
        "discard" + " " * 9 + "9/tcp",
        "ftp" + " " * 5 + "21/tcp",
    ]
    assert {b.y1 - b.y0 for b in rows} == {13} and page.lines[0].y1 - page.lines[0].y0 == 10
    # the layout never holds more than the typesetter knows: tab stops and sizes, not text
    assert LineBox.from_json(rows[0].to_json()) == rows[0]
    old = LineBox.from_json(rows[0].to_json()[:9])  # rows stored before tabs and em existed
    assert not old.tabs and old.em == 0.0
    assert rows[0].scaled(0.8).em == pytest.approx(8.8)


def test_preformatted_rows_give_back_line_breaks_and_wraps():
    long_line = "\t".join(f"field{i:02d}" for i in range(20))
    content = "```\nx = 1\n\n\n    y = [x] * 3\n" + long_line + "\n```"
    tab_line = "prose with\ta tab stays on its own row"
    (page,) = paginate(
        [TurnText(1, "assistant", content), TurnText(2, "user", "see\n" + tab_line)],
        RenderOptions(canvas=512, font_px=8, code_font_px=9),
    )
    rows = [b for b in page.lines if b.turn_id == 1 and b.kind == "code"]
    assert len(rows) > len(content.split("\n")) - 2  # the long line wrapped
    assert all(b.x1 <= 512 for b in page.lines)
    # rows carry every character (a space at a wrap starts the next row), so recall can join
    # wrapped rows with nothing and put back the blank lines from the offsets alone
    texts = turn_texts([(b, content[b.start : b.end]) for b in rows])
    assert texts[1] == content
    mixed = [b for b in page.lines if b.turn_id == 2]
    assert [b.kind for b in mixed] == ["text", "code"] and mixed[1].tabs


def test_code_font_px_is_validated():
    with pytest.raises(InputError):
        RenderOptions(canvas=512, font_px=8, code_font_px=300)


def test_markdown_table_rows_keep_their_shape():
    table = "Status:\n| host | cpu % |\n|---|---|\n| web-01 | 71.5 |\nAll fine."
    (page,) = paginate([TurnText(1, "assistant", table)], RenderOptions(canvas=512, font_px=8))
    assert [b.kind for b in page.lines] == ["text", "code", "code", "code", "text"]
