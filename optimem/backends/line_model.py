"""optimem's own line model: the Latin lines of aged pages, read ten times cheaper.

A page aged one rung down the ladder shrinks its 8 px type to 6.4 px (Small → Tiny, Large →
Base), too blurred for tesseract. rapidocr's PP-OCRv6 recogniser reads those lines well but
is a general model for any script and font, at 36 ms a line on two cores. The line model is
trained on nothing but optimem's own type aged that way (`scripts/train_line_model.py`:
synthetic text, no benchmark text), convolutions only with ~0.75 M weights, and shipped as
ONNX inside the package (`optimem/data/line_model.onnx`), so the CPU install runs it with
onnxruntime alone. It reads such a line in ~4 ms and more of them exactly
(docs/reading-speed.md, benchmarks/line_model.py).

`AgedLineBackend` gives it the lines it was trained for (Latin prose whose crop is the
model's height, on pages without CJK) and the rest (CJK pages, code rows, other sizes, pages
without a layout) to another backend, rapidocr by default.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import threading
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import BackendUnavailable
from . import _lines
from .base import Backend, Capabilities, Decoded, PageInput, lines_subset
from .rapidocr import CROP_EM

MODEL = "line_model.onnx"
#: A second opinion on aged lines that fail their check: the model shipped before the current
#: one learnt lines off the pixel grid (9abe188, on-grid lines only). Each reads some lines
#: right that the other misses: given as one more reading to proofread, it puts back 12 Tiny
#: lines of LoCoMo 41 and 43 that the current model alone left unverified.
SECOND_MODEL = "line_model_second.onnx"
#: The model learnt optimem's 8 px type (what every mode but Tiny typesets at) shrunk to 6.4 px,
#: as one rung of aging shrinks it. A sharp 8 px page is read shrunk the same way.
SOURCE_PX, MODEL_PX = 8.0, 6.4
#: batches are padded to a multiple of this many columns, with at least TAIL of white after the widest
PAD_TO, TAIL = 32, 8


def model_path(path: Path | str | None = None, default: str = MODEL) -> Path:
    """`path`, or the model shipped inside the optimem package, checked to exist."""
    path = Path(path) if path is not None else Path(str(resources.files("optimem.data") / default))
    if not path.is_file():
        raise BackendUnavailable(
            f"no line model at {path}: reinstall optimem (the wheel ships {default}) or build it "
            "with scripts/train_line_model.py"
        )
    return path


@functools.cache
def model_digest(path: Path) -> str:
    """The first 10 hex digits of the model file's SHA-256: what a cache key names it by."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def cut_line(gray: np.ndarray, box, font_px: float) -> np.ndarray:
    """The line as the model was trained on it: cut as rapidocr cuts lines (`CROP_EM` ems
    tall: 6.4 px type gives 12 px crops)."""
    return _lines.cut_line(gray, box, font_px, CROP_EM)


class LineModel:
    """Reads grey line crops (uint8, the model's height, any width) to (text, score)."""

    def __init__(self, threads: int = 2, batch: int = 16, path: Path | str | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("the line model needs onnxruntime: pip install onnxruntime") from exc
        path = model_path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a truncated or foreign file
            raise BackendUnavailable(f"the line model at {path} could not load: {exc}") from exc
        meta = self._session.get_modelmeta().custom_metadata_map
        if "character" not in meta or "height" not in meta:
            raise BackendUnavailable(f"{path} carries no character table: not an optimem line model")
        self.height = int(meta["height"])
        self.trained = json.loads(meta.get("trained", "{}"))
        self._chars = np.array(["", *meta["character"].split("\n")], dtype=object)  # 0: CTC blank
        self.digest = model_digest(path)
        self.batch = max(1, int(batch))
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    def fits(self, crop: np.ndarray) -> bool:
        """Whether the crop is a line the model reads: its height, or one row over (a line
        centred between rows rounds out to one more; the model reads the top rows)."""
        return self.height <= crop.shape[0] <= self.height + 1

    def read(self, crops: Sequence[np.ndarray]) -> tuple[list[str], list[float]]:
        """Text and mean character confidence of each crop, in the order given."""
        texts, scores = [""] * len(crops), [0.0] * len(crops)
        widths = np.array([c.shape[1] for c in crops])
        order = np.argsort(widths, kind="stable")  # similar widths share a batch
        for start in range(0, len(crops), self.batch):
            idx = order[start : start + self.batch]
            # white space to the right, as in training: CTC may emit a line's last letters a few
            # columns past its ink
            width = PAD_TO * math.ceil((int(widths[idx].max()) + TAIL) / PAD_TO)
            tensor = np.zeros((len(idx), 1, self.height, width), dtype=np.float32)
            for k, i in enumerate(idx):
                crop = crops[i][: self.height]
                tensor[k, 0, :, : crop.shape[1]] = (255 - crop.astype(np.float32)) / 255  # ink in [0, 1]
            with self._lock:
                (probs,) = self._session.run(None, {self._input: tensor})
            for i, row in zip(idx, probs, strict=True):
                texts[i], scores[i] = self._decoded(row)
        return texts, scores

    def _decoded(self, probs: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: the best class per column, repeats collapsed, blanks dropped."""
        best = probs.argmax(axis=1)
        keep = np.ones(len(best), dtype=bool)
        keep[1:] = best[1:] != best[:-1]
        keep &= best != 0
        confs = probs.max(axis=1)[keep]
        # spaces at either end are the crop's margins (code rows, whose indentation counts, are
        # never given to the model)
        return "".join(self._chars[best[keep]]).strip(), float(confs.mean()) if confs.size else 0.0


def at_model_size(page: PageInput) -> PageInput:
    """`page` as the model reads it: a sharp page of 8 px type shrunk to 6.4 px as one rung of
    aging would shrink it (the same filter, its boxes scaled alike); any other as it is.

    Read this way, sharp lines come back better than tesseract reads them at full size (on
    pages of the embedded chat and LoCoMo, 99.5-99.9% fidelity against 97.3-98.2%) in a third
    of its time (docs/reading-speed.md). Pages typeset at Tiny (9 px) are not shrunk: their
    hinting differs, and the model reads them badly."""
    if page.lines and abs(page.font_px - SOURCE_PX) < 0.05:
        factor = MODEL_PX / SOURCE_PX
        size = (max(1, round(page.image.width * factor)), max(1, round(page.image.height * factor)))
        return dataclasses.replace(
            page,
            image=page.image.resize(size, Image.Resampling.LANCZOS),
            lines=tuple(box.scaled(factor) for box in page.lines),
            font_px=MODEL_PX,
        )
    return page


class AgedLineBackend(Backend):
    """The line model for the Latin prose lines of aged pages; `rest` for everything else."""

    name = "lines"
    capabilities = Capabilities(reads_mode=False, in_processes=True)

    def __init__(
        self,
        rest: Backend | None = None,
        *,
        threads: int = 2,
        batch: int = 16,
        path: Path | str | None = None,
        second: Path | str | bool = True,
    ) -> None:
        """Args:
        rest: reads the lines the model does not (default rapidocr).
        threads: onnxruntime intra-op threads.
        batch: line crops per model call (crops are sorted by width first).
        path: an ONNX line model (default: the one shipped in the package).
        second: a second line model whose reading of a line is one more for proofreading
            (`second_reading`): True for the one shipped (`SECOND_MODEL`), a path, or False.
        """
        if rest is None:
            from .rapidocr import RapidOCRBackend

            rest = RapidOCRBackend(threads=threads)
        self.rest = rest
        self.threads, self.batch = threads, batch
        self.path = model_path(path)  # fails now, naming the file, rather than at the first page
        self.second_path = (
            None if second is False else model_path(None if second is True else second, SECOND_MODEL)
        )
        self._model: LineModel | None = None
        self._second: LineModel | None = None
        self._lock = threading.Lock()

    def model(self) -> LineModel:
        with self._lock:
            if self._model is None:
                self._model = LineModel(self.threads, self.batch, self.path)
            return self._model

    def fingerprint(self) -> str:
        second = f";second={model_digest(self.second_path)}" if self.second_path else ""
        return (
            f"lines[model={model_digest(self.path)}{second};crop={CROP_EM}em;rest={self.rest.fingerprint()}]"
        )

    def second_reading(self, page: PageInput, lines: Sequence[int]) -> dict[int, str]:
        """The second model's reading of these lines of `page`, those the model reads (none
        without a second model). Proofreading asks for it only for lines that failed their
        check, so it costs a few milliseconds a page."""
        if self.second_path is None or not lines:
            return {}
        with self._lock:
            if self._second is None:
                self._second = LineModel(self.threads, self.batch, self.second_path)
            second = self._second
        return {i: text for i, (text, _) in self._read(second, page, lines).items() if text}

    def decode(self, page: PageInput) -> Decoded:
        t0 = time.perf_counter()
        if not page.lines:
            return self._renamed(self.rest.decode(page), time.perf_counter() - t0)
        texts, scores = [""] * len(page.lines), [0.0] * len(page.lines)
        ours = self.read_lines(page)
        for i, (text, score) in ours.items():
            texts[i], scores[i] = text, score
        others = [i for i in range(len(page.lines)) if i not in ours]
        if others:
            part = self.rest.decode(lines_subset(page, others))
            for i, text in zip(others, part.lines or ("",) * len(others), strict=True):
                texts[i], scores[i] = text, part.confidence
        return Decoded(
            "\n".join(texts),
            _lines.mean_score([s for s, t in zip(scores, texts, strict=True) if t]),
            self.name,
            time.perf_counter() - t0,
            tuple(texts),
        )

    def read_lines(self, page: PageInput) -> dict[int, tuple[str, float]]:
        """(text, confidence) of each line of `page` the model reads, by line."""
        return self._read(self.model(), page)

    def _read(
        self, model: LineModel, page: PageInput, only: Sequence[int] | None = None
    ) -> dict[int, tuple[str, float]]:
        """`model`'s (text, confidence) of each line of `page` it reads (of those `only`
        names, when given), by line; a blank crop reads as nothing."""
        ours = self._model_crops(page, model)
        if only is not None:
            wanted = set(only)
            ours = {i: crop for i, crop in ours.items() if i in wanted}
        ink = [i for i, crop in ours.items() if not _lines.is_blank(crop)]
        read = dict.fromkeys(ours, ("", 0.0))
        for i, text, score in zip(ink, *model.read([ours[i] for i in ink]), strict=True):
            read[i] = (text, score)
        return read

    def model_lines(self, page: PageInput) -> list[int]:
        """The lines of `page` the model reads (the rest go to `rest`)."""
        return list(self._model_crops(page, self.model())) if page.lines else []

    def _model_crops(self, page: PageInput, model: LineModel) -> dict[int, np.ndarray]:
        """Crops of the Latin prose lines whose crop is the model's height, by line, cut from
        the page at the model's type size (`at_model_size`). Lines below a taller (CJK) line
        sit off the 8-pixel grid of an all-Latin page; the model learnt such lines too
        (`scripts/train_line_model.py --shifts`)."""
        page = at_model_size(page)
        gray = _lines.as_gray(page.image)
        ours: dict[int, np.ndarray] = {}
        for i, box in enumerate(page.lines):
            if box.kind != "text" or _lines.line_em(box, page.font_px)[1]:
                continue  # code rows are judged glyph by glyph, CJK lines are rapidocr's
            crop = cut_line(gray, box, page.font_px)
            if model.fits(crop):
                ours[i] = crop
        return ours

    def _renamed(self, decoded: Decoded, seconds: float) -> Decoded:
        return dataclasses.replace(decoded, backend=self.name, seconds=seconds)

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        """Load the model and run it once (onnxruntime optimises a graph on first use)."""
        t0 = time.perf_counter()
        self.model().read([np.full((self.model().height, 64), 255, np.uint8)])
        return time.perf_counter() - t0 + self.rest.warm_up(batch_sizes)

    def close(self) -> None:
        with self._lock:
            self._model = None
        self.rest.close()
