"""Real OCR round trips through the CPU backends (tesseract, rapidocr). No mocks of the OCR.

Pages here are small on purpose (a few short lines on each mode's full canvas) so the file
runs in well under a minute; the full-page figures come from scripts/calibrate.py and
benchmarks/ocr_throughput.py.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from optimem.backends import _lines, get_backend
from optimem.backends.base import PageInput
from optimem.errors import BackendUnavailable
from optimem.layout import LineBox
from optimem.modes import LADDER, Mode
from optimem.pages.typeset import RenderOptions, TurnText, paginate, resize_to
from optimem.reading.fidelity import fidelity

LATIN = [
    TurnText(1, "user", "Move the replica db-replica-03 to the new subnet on Friday."),
    TurnText(2, "assistant", "Done. The cutover window is 02:00 to 04:30 UTC, about 2.5 hours."),
    TurnText(3, "user", "Thanks. Please remind me to call Chen Wei about the hotel booking."),
]
CJK = [
    TurnText(1, "user", "陈伟你好！谢谢你这个星期帮我们处理数据库迁移的事情。"),
    TurnText(2, "assistant", "我四月二十二号到成都，我们一起吃顿晚饭吧。"),
]


def _backend(name: str):
    if name == "tesseract":
        pytest.importorskip("tesserocr", reason="the tesseract extra is not installed")
    try:
        return get_backend(name)
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module", params=["tesseract", "rapidocr"])
def backend(request):
    return _backend(request.param)


def _page(turns, canvas: int, px: int, cjk_px: int | None = None):
    return paginate(turns, RenderOptions(canvas=canvas, font_px=px, cjk_font_px=cjk_px))[0]


def _input(page, mode: Mode, lines=None, font_px=None) -> PageInput:
    return PageInput(
        page.image,
        mode,
        page.lines if lines is None else lines,
        float(font_px or page.options.font_px),
        page.has_cjk,
    )


@pytest.mark.slow
@pytest.mark.parametrize("mode", LADDER, ids=lambda m: m.value)
def test_round_trip_every_mode(backend, mode):
    page = _page(LATIN, mode.canvas, 10)
    decoded = backend.decode(_input(page, mode))
    assert decoded.backend == backend.name
    assert decoded.lines is not None and len(decoded.lines) == len(page.lines)
    assert decoded.text == "\n".join(decoded.lines)
    assert fidelity(decoded.text, page.text) >= 0.97, decoded.text
    assert 0.5 < decoded.confidence <= 1.0
    assert decoded.seconds > 0


def test_dense_small_type_reads_with_upscaling(backend):
    page = _page(LATIN, Mode.TINY.canvas, 8)
    decoded = backend.decode(_input(page, Mode.TINY))
    assert fidelity(decoded.text, page.text) >= 0.95, decoded.text


def test_lines_stay_aligned_with_blank_lines(backend):
    turns = [TurnText(1, "user", "First line of text.\n\n\nLast line after blanks.")]
    page = _page(turns, Mode.SMALL.canvas, 10)
    # A box with nothing drawn in it still gets its own (empty) entry.
    blank = LineBox(6, 400, 300, 412, "", 1, 0, 0)
    lines = (*page.lines, blank)
    decoded = backend.decode(_input(page, Mode.SMALL, lines))
    assert decoded.lines is not None and len(decoded.lines) == len(lines)
    assert decoded.lines[-1] == ""
    assert "Last line" in decoded.lines[len(page.lines) - 1]


@pytest.mark.slow
def test_cjk_round_trip(backend):
    page = _page(CJK, Mode.SMALL.canvas, 12, 16)
    assert page.has_cjk
    decoded = backend.decode(_input(page, Mode.SMALL))
    assert len(decoded.lines) == len(page.lines)
    assert fidelity(decoded.text, page.text) >= 0.9, decoded.text


def test_aged_page_keeps_line_alignment(backend):
    """Render at Large, age to Base by resizing, read with the layout scaled to fit."""
    page = _page(LATIN, Mode.LARGE.canvas, 12)
    factor = Mode.BASE.canvas / Mode.LARGE.canvas
    aged = resize_to(page.image, Mode.BASE.canvas)
    lines = tuple(line.scaled(factor) for line in page.lines)
    decoded = backend.decode(PageInput(aged, Mode.BASE, lines, 12 * factor, False))
    assert len(decoded.lines) == len(lines)
    assert fidelity(decoded.text, page.text) >= 0.95, decoded.text


@pytest.mark.slow
def test_full_page_fallback_reads_in_order(backend):
    turns = [
        TurnText(i, "user", f"{word} is line number {i} of the fallback test.")
        for i, word in enumerate(["Alpha", "Bravo", "Charlie", "Delta", "Echo"])
    ]
    page = _page(turns, Mode.BASE.canvas, 9)  # small, tightly packed rows
    decoded = backend.decode(_input(page, Mode.BASE, lines=()))
    assert decoded.lines is None
    assert fidelity(decoded.text, page.text) >= 0.9, decoded.text
    positions = [decoded.text.find(w) for w in ["Alpha", "Bravo", "Charlie", "Delta", "Echo"]]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), decoded.text


@pytest.mark.slow
def test_full_page_detection_can_still_align_lines(backend):
    cls = type(backend)
    detector = cls(use_layout=False)
    try:
        page = _page(LATIN, Mode.SMALL.canvas, 10)
        decoded = detector.decode(_input(page, Mode.SMALL))
        assert decoded.lines is not None and len(decoded.lines) == len(page.lines)
        assert fidelity(decoded.text, page.text) >= 0.95, decoded.text
    finally:
        detector.close()


@pytest.mark.slow
def test_concurrent_decodes_agree(backend):
    pages = [_page(LATIN, Mode.SMALL.canvas, px) for px in (10, 11)]
    expected = [backend.decode(_input(p, Mode.SMALL)).text for p in pages]
    got: dict[int, str] = {}

    def work(i: int) -> None:
        got[i] = backend.decode(_input(pages[i % 2], Mode.SMALL)).text

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(4)] == [expected[i % 2] for i in range(4)]


def test_fingerprint_names_engine_and_settings(backend):
    fp = backend.fingerprint()
    assert backend.name in fp
    assert any(ch.isdigit() for ch in fp)  # the engine's version


# -- tesseract specifics ------------------------------------------------------------------


def test_tesseract_missing_language_says_what_to_install(tmp_path: Path):
    pytest.importorskip("tesserocr", reason="the tesseract extra is not installed")
    from optimem.backends.tesseract import TesseractBackend, find_tessdata

    eng = find_tessdata() / "eng.traineddata"
    os.symlink(eng, tmp_path / "eng.traineddata")
    backend = TesseractBackend(tessdata=tmp_path)
    try:
        latin = _page(LATIN, Mode.TINY.canvas, 10)
        assert backend.decode(_input(latin, Mode.TINY)).text  # English still reads
        page = _page(CJK, Mode.SMALL.canvas, 14)
        with pytest.raises(BackendUnavailable, match="apt-get install tesseract-ocr-chi-sim"):
            backend.decode(_input(page, Mode.SMALL))
    finally:
        backend.close()


def test_tesseract_without_any_data_fails_at_construction(tmp_path: Path):
    pytest.importorskip("tesserocr", reason="the tesseract extra is not installed")
    from optimem.backends.tesseract import TesseractBackend

    with pytest.raises(BackendUnavailable, match="apt-get install tesseract-ocr-eng"):
        TesseractBackend(tessdata=tmp_path)


# -- geometry helpers (pure) --------------------------------------------------------------


def test_rows_by_centre_fixes_chained_small_boxes():
    # Tops differ by < 10 px across rows: a sort by top alone would interleave them.
    boxes = [
        _lines.Box(300, 11, 400, 19, "row1-right", 0.9),
        _lines.Box(10, 2, 120, 10, "row0-left", 0.9),
        _lines.Box(10, 12, 120, 20, "row1-left", 0.9),
        _lines.Box(200, 1, 280, 9, "row0-right", 0.9),
    ]
    rows = _lines.rows_by_centre(boxes)
    assert _lines.join_rows(rows) == "row0-left row0-right\nrow1-left row1-right"


def test_assign_to_lines_keeps_one_entry_per_line():
    lines = [LineBox(0, y, 500, y + 12, "", 1, 0, 0) for y in (0, 12, 24)]
    boxes = [_lines.Box(200, 1, 300, 11, "b", 1), _lines.Box(0, 2, 100, 10, "a", 1)]
    boxes.append(_lines.Box(0, 26, 100, 34, "c", 1))
    assert _lines.assign_to_lines(boxes, lines) == ["a b", "", "c"]


def test_line_em_tells_cjk_lines_by_height():
    assert _lines.line_em(LineBox(0, 0, 100, 12, "", 1, 0, 0), 10) == (10, False)
    em, cjk = _lines.line_em(LineBox(0, 0, 100, 15, "", 1, 0, 0), 10)
    assert cjk and em == pytest.approx(15 / 1.45)


def test_latin_rows_off_the_pixel_grid_stay_latin_when_their_page_ages():
    """Below a taller line, Latin rows sit off the grid, and aging rounds their boxes out a
    pixel more than their neighbours': at 6.4 px they are 9 px tall, CJK rows 10 or more."""
    latin, cjk = LineBox(0, 21, 300, 31, "", 1, 0, 0), LineBox(0, 0, 300, 13, "", 1, 0, 0)
    for factor in (0.8, 0.625):  # one rung (Small → Tiny, Large → Base), Base → Small
        for shift in range(8):
            moved = LineBox(0, latin.y0 + shift, 300, latin.y1 + shift, "", 1, 0, 0).scaled(factor)
            assert not _lines.line_em(moved, 8 * factor)[1], (factor, shift, moved)
            tall = LineBox(0, cjk.y0 + shift, 300, cjk.y1 + shift, "", 1, 0, 0).scaled(factor)
            assert _lines.line_em(tall, 8 * factor)[1], (factor, shift, tall)


def test_tidy_cjk():
    assert _lines.tidy_cjk("user：陈伟 你 好 , 谢谢") == "user: 陈伟你好，谢谢"
    assert _lines.tidy_cjk("Vim 是 一个 editor") == "Vim 是一个 editor"


def test_line_crops_keep_the_type_about_half_their_height_after_rounding():
    """rapidocr scales every crop to 48 px, so the crop's height in ems decides how large the
    type reaches the model. Crops round out to whole pixels: the default gives sharp 8 px
    lines and blurred 6.4 px Tiny lines ~2 ems (2.0 em gave Tiny lines 14 px, 2.19 ems, and
    far fewer of them read exactly: benchmarks/crop_height.py)."""
    rapid = _backend("rapidocr")
    page = _page([TurnText(1, "user", "Which crop height reads blurred type best?")], Mode.SMALL.canvas, 8)
    for mode, want in ((Mode.SMALL, 16), (Mode.TINY, 12)):  # typeset at Small, then aged
        factor = mode.canvas / Mode.SMALL.canvas
        gray = _lines.as_gray(resize_to(page.image, mode.canvas))
        for line in page.lines:
            box = line.scaled(factor)
            em, _ = _lines.line_em(box, 8 * factor)
            height = rapid.cut_line(gray, box, 8 * factor).shape[0]
            assert height == want, (mode, height)
            assert 1.8 <= height / em <= 2.0


@pytest.mark.parametrize("crop_em", [0, -1.8, float("nan"), float("inf")])
def test_a_crop_height_that_cannot_cut_a_line_is_refused(crop_em):
    pytest.importorskip("onnxruntime")
    from optimem.backends.rapidocr import RapidOCRBackend

    with pytest.raises(ValueError, match="crop_em must be a positive number"):
        RapidOCRBackend(crop_em=crop_em)
