"""optimem's own line recogniser against rapidocr's pipeline, on real line crops.

LineRecogniser claims rapidocr's text and scores exactly (same model, preprocessing and CTC
decoding); reading the same crops through both is what keeps that claim true when either
side changes. Pages are small: a few Latin and Chinese lines, sharp and aged.
"""

from __future__ import annotations

import numpy as np
import pytest

from optimem.backends import _lines
from optimem.backends._recogniser import LineRecogniser, model_path
from optimem.backends.rapidocr import RapidOCRBackend
from optimem.errors import BackendUnavailable
from optimem.pages.typeset import RenderOptions, TurnText, paginate, resize_to

TURNS = [
    TurnText(1, "user", "Move the replica db-replica-03 to the new subnet on Friday, please."),
    TurnText(2, "assistant", "Done. The cutover window is 02:00 to 04:30 UTC, about 2.5 hours."),
    TurnText(3, "user", "陈伟你好！谢谢你这个星期帮我们处理数据库迁移的事情。"),
    TurnText(4, "assistant", "x"),
]


def _crops() -> list[np.ndarray]:
    """Grey crops as RapidOCRBackend cuts them: sharp 9 px lines and the same page shrunk."""
    backend = RapidOCRBackend()
    page = paginate(TURNS, RenderOptions(canvas=640, font_px=9, cjk_font_px=11))[0]
    crops = []
    for image, scale in ((page.image, 1.0), (resize_to(page.image, 512), 512 / 640)):
        gray = _lines.as_gray(image)
        for box in page.lines:
            crops.append(backend._crop(gray, box.scaled(scale), 9 * scale))
    return [c for c in crops if not _lines.is_blank(c)]


def test_reads_what_rapidocr_reads():
    rapidocr = pytest.importorskip("rapidocr")
    crops = _crops()
    assert len(crops) >= 8
    ours = LineRecogniser(threads=2, batch=3).read(crops)
    engine = rapidocr.RapidOCR(params={"Global.log_level": "warning", "Rec.rec_batch_num": 3})
    theirs = engine.recognize_txt([np.repeat(c[:, :, None], 3, axis=2) for c in crops])
    assert ours[0] == list(theirs.txts)
    assert ours[1] == pytest.approx([float(s) for s in theirs.scores], abs=1e-5)
    assert any("db-replica-03" in t for t in ours[0])
    assert any("数据库" in t for t in ours[0])


def test_order_given_is_order_returned():
    crops = _crops()
    recogniser = LineRecogniser(batch=4)
    texts, _ = recogniser.read(crops)
    reversed_texts, _ = recogniser.read(crops[::-1])
    assert reversed_texts == texts[::-1]
    assert recogniser.read([]) == ([], [])


def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"absent\.onnx"):
        LineRecogniser(path=tmp_path / "absent.onnx")
    assert model_path().name == "PP-OCRv6_rec_small.onnx"
