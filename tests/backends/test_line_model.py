"""optimem's line model: the shipped ONNX file read by onnxruntime, its routing, its build."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from optimem.backends import _lines
from optimem.backends.base import PageInput
from optimem.backends.line_model import AgedLineBackend, LineModel, cut_line, model_path
from optimem.backends.testing import TestDoubleBackend
from optimem.errors import BackendUnavailable
from optimem.modes import Mode
from optimem.pages import calibration
from optimem.pages.typeset import TurnText, paginate, resize_to
from optimem.reading.fidelity import fidelity

ROOT = Path(__file__).resolve().parents[2]
PROSE = [
    TurnText(1, "user", "We drove to the lake on Saturday and stayed until 7:45, when the rain came in."),
    TurnText(2, "assistant", "That sounds lovely! Did Melanie bring the new camera she bought in March?"),
    TurnText(3, "user", "She did, and she took 214 photos. I'll send you the best ones tomorrow."),
]


def _aged(turns, created: Mode = Mode.SMALL, aged: Mode = Mode.TINY):
    """A page typeset as the cpu backend typesets `created` pages, aged to `aged`."""
    options = calibration.render_options("cpu", created)
    (page,) = paginate(turns, options)
    factor = aged.canvas / options.canvas
    image = resize_to(page.image, aged.canvas)
    lines = tuple(line.scaled(factor) for line in page.lines)
    return page, PageInput(image, aged, lines, options.font_px * factor, page.has_cjk)


def test_the_shipped_model_says_what_it_reads():
    model = LineModel()
    assert model.height == 12
    assert set("abcxyzABC0189 .,:;!?'\"-") <= set(model._chars)
    assert model.trained["lines"] > 10_000  # the training record travels in the file
    assert len(model.digest) == 10


def test_it_reads_aged_lines_it_never_saw():
    page, aged = _aged(PROSE)
    gray = _lines.as_gray(aged.image)
    crops = [cut_line(gray, box, aged.font_px) for box in aged.lines]
    model = LineModel()
    assert all(model.fits(c) for c in crops)
    texts, scores = model.read(crops)
    assert fidelity("\n".join(texts), page.text) >= 0.98
    assert all(0.5 < s <= 1.0 for s in scores)
    # order given is order returned, whatever the batching by width
    assert model.read(crops[::-1])[0] == texts[::-1]


def test_it_reads_the_lines_below_a_taller_line():
    # a Chinese line is taller, so the Latin lines below it shrink to Tiny off the 8-pixel grid
    # of an all-Latin page: a model that learnt only the grid read them as noise (23% fidelity)
    chinese = TurnText(9, "user", "谢谢你！我们四月二十三日在成都见面吧。")
    page, aged = _aged([PROSE[0], chinese, *PROSE[1:]])
    assert {box.y0 % 8 for box in aged.lines} != {4}  # some lines are off the grid
    backend = AgedLineBackend(rest=TestDoubleBackend())
    read = backend.decode(aged).lines
    latin = backend.model_lines(aged)
    assert len(latin) >= 3
    for i in latin:
        assert fidelity(read[i], page.lines[i].text.strip()) >= 0.95, (read[i], page.lines[i].text)


def test_it_keeps_the_punctuation_inside_words():
    # the line check compares words, not the marks between them: a hyphen read as a space
    # would pass it, so the model must read "self-care" and "OPS-4821" as they are
    text = "My self-care is a not-so-great habit; ticket OPS-4821, v2.0.3 and advice/assistance."
    _, aged = _aged([TurnText(1, "user", text)])
    read = AgedLineBackend().decode(aged).text
    for mark in ("self-care", "not-so-great", "OPS-4821", "v2.0.3", "advice/assistance"):
        assert mark in read, (mark, read)


def test_a_blank_crop_reads_as_nothing():
    texts, _ = LineModel().read([np.full((12, 90), 255, np.uint8)])
    assert texts == [""]


def test_a_second_model_reads_the_lines_asked_for_as_one_more_opinion(tmp_path):
    from optimem.backends.cpu import CpuBackend

    page, aged = _aged(PROSE)
    backend = AgedLineBackend(rest=TestDoubleBackend())
    second = backend.second_reading(aged, [0, 2])
    assert set(second) == {0, 2}  # only the lines asked for
    assert all(fidelity(second[i], page.lines[i].text) >= 0.95 for i in second)
    assert ";second=" in backend.fingerprint()
    # re-reading an aged page: the second model's reading comes first, then the engines'
    cpu = CpuBackend(blurred=AgedLineBackend(rest=TestDoubleBackend()))
    wrong = ["nothing like it", "nor this"]
    found = cpu.alternates(aged, [0, 1], wrong)
    assert found[0][0] == cpu.blurred.second_reading(aged, [0])[0]
    # without one, nothing is read twice, and the fingerprint says so
    alone = AgedLineBackend(rest=TestDoubleBackend(), second=False)
    assert alone.second_reading(aged, [0, 2]) == {} and ";second=" not in alone.fingerprint()
    with pytest.raises(BackendUnavailable, match=r"no line model at .*absent\.onnx"):
        AgedLineBackend(rest=TestDoubleBackend(), second=tmp_path / "absent.onnx")


def test_missing_or_foreign_model_files_say_so(tmp_path):
    with pytest.raises(BackendUnavailable, match=r"no line model at .*train_line_model\.py"):
        model_path(tmp_path / "absent.onnx")
    from optimem.backends._recogniser import model_path as ppocr_path

    with pytest.raises(BackendUnavailable, match="not an optimem line model"):
        LineModel(path=ppocr_path())  # PP-OCRv6's recogniser: a character table but no height
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(BackendUnavailable, match="could not load"):
        LineModel(path=broken)


def test_only_latin_prose_lines_of_the_model_s_height_go_to_the_model():
    rest = TestDoubleBackend()
    backend = AgedLineBackend(rest=rest)
    code = TurnText(2, "assistant", "Run this:\n```python\nfor x in range(3):\n    print(x)\n```")
    page, aged = _aged([PROSE[0], code])
    rows = [i for i, box in enumerate(page.lines) if box.kind == "code"]
    assert rows and not set(rows) & set(backend.model_lines(aged))
    assert backend.model_lines(aged) == [i for i in range(len(page.lines)) if i not in rows]
    decoded = backend.decode(aged)
    assert rest.calls == 1
    assert [decoded.lines[i] for i in rows] == [page.lines[i].text for i in rows]  # the double's
    assert decoded.backend == "lines"
    # on a page holding CJK, the CJK line goes to `rest` and the Latin lines to the model
    page, mixed = _aged([*PROSE[:1], TurnText(2, "assistant", "我们四月二十三日在成都办公室开会。")])
    cjk = [i for i, box in enumerate(mixed.lines) if _lines.line_em(box, mixed.font_px)[1]]
    assert mixed.has_cjk and cjk
    assert backend.model_lines(mixed) == [i for i in range(len(page.lines)) if i not in cjk]
    # 5 px type (Base aged to Small) cuts crops the model was not trained on: all to `rest`
    _, smaller = _aged(PROSE, Mode.BASE, Mode.SMALL)
    assert backend.model_lines(smaller) == []


def test_the_training_script_builds_a_model_the_backend_loads(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    script = [sys.executable, str(ROOT / "scripts" / "train_line_model.py")]
    data, run, onnx_file = tmp_path / "d.npz", tmp_path / "run", tmp_path / "m.onnx"
    for args in (
        ["data", "--turns", "12", "--shifts", "4", "--out", str(data)],
        # a fine-tune of the shipped model (its batch norms were folded into its convolutions)
        ["train", str(data), "--init", str(model_path()), "--minutes", "0.01", "--out", str(run)],
        ["export", str(run / "crnn.pt"), "--out", str(onnx_file)],
    ):
        # one torch thread: beside another xdist worker the train step was seen to stall past 300 s
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([*script, *args], capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr
    model = LineModel(path=onnx_file)
    assert model.height == 12 and model.trained["device"] == "cpu"
    assert model.trained["from"]["lines"] > 10_000  # what it was fine-tuned from
    texts, scores = model.read([np.full((12, 40), 200, np.uint8)])
    assert isinstance(texts[0], str) and 0.0 <= scores[0] <= 1.0
