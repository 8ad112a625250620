"""RapidOCRBackend: PP-OCRv6 (ONNX, shipped inside the rapidocr wheel) reading known lines.

With the page's layout, detection is skipped: each line is cut out `crop_em` ems tall around
its centre and the crops go to the recogniser in batches, run by optimem's own
`LineRecogniser` (the same model and text, without rapidocr's import cost and with
onnxruntime's memory arena on: 1.5x faster). The crop height sets the type's size at the
recogniser's input (it scales every crop to 48 px high), so its cost grows with
width × 48 / crop height. Crops are rounded out to whole pixels: 1.8 em gives 8 px Latin lines
16 px (2 ems: as exact as a tight crop at twice the speed) and blurred 6.4 px Tiny lines 12 px
(1.88 ems), where 2.0 em gave them 14 px (2.19 ems) and far fewer lines read exactly
(docs/cpu-backends.md, benchmarks/crop_height.py). Without a layout, the page is detected and
recognised whole (upscaled 2x for small type) and the boxes re-sorted by centre.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..errors import BackendUnavailable
from . import _lines
from ._recogniser import LineRecogniser, model_path
from .base import Backend, Capabilities, Decoded, PageInput

PIP_LINE = "pip install 'rapidocr>=3.10' onnxruntime"
#: Line crop height in ems: after rounding out to whole pixels the type fills about half of it.
CROP_EM = 1.8
# Whole-page detection: upscale pages whose text is under 9 px per em (DESIGN §5: the
# detector does not upscale inputs ≥736 px, so small type on large canvases is missed).
PAGE_UPSCALE: tuple[tuple[float, int], ...] = ((9.0, 1), (0.0, 2))


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(f"the rapidocr backend needs onnxruntime: {PIP_LINE}") from exc
    return onnxruntime


def _import_rapidocr():
    """rapidocr's whole pipeline (~0.6 s to import), needed only for pages without a layout."""
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise BackendUnavailable(f"the rapidocr backend needs rapidocr: {PIP_LINE}") from exc
    return RapidOCR


class RapidOCRBackend(Backend):
    """Reads pages with RapidOCR's PP-OCRv6 models on the CPU."""

    name = "rapidocr"
    capabilities = Capabilities(reads_mode=False, in_processes=True)

    def __init__(
        self,
        workers: int = 1,
        threads: int = 2,
        *,
        batch: int = 8,
        crop_em: float = CROP_EM,
        use_layout: bool = True,
        page_upscale: Sequence[tuple[float, int]] = PAGE_UPSCALE,
    ) -> None:
        """Args:
        workers: engines run side by side on separate lines (each with `threads`).
        threads: onnxruntime intra-op threads per engine.
        batch: line crops per recogniser call (crops are sorted by width first).
        crop_em: height of each line crop in ems, rounded out to whole pixels; larger is
            faster until the type is too small to read (2.6 ems loses text on sharp pages,
            2.2 on blurred ones).
        use_layout: read known line boxes; False detects text on the whole page.
        page_upscale: (minimum em px, factor) steps for whole-page detection.
        """
        self._ort = _import_onnxruntime()
        model_path()  # fails now, naming the wheel, rather than at the first page
        self.workers = max(1, int(workers))
        self.threads = max(1, int(threads))
        self.batch = max(1, int(batch))
        self.crop_em = float(crop_em)
        if not 0 < self.crop_em < math.inf:
            raise ValueError(f"crop_em must be a positive number of ems, got {crop_em!r}")
        self.use_layout = use_layout
        self.page_upscale = tuple(page_upscale)
        self._engine: Any = None  # rapidocr's whole pipeline, for pages without a layout
        self._recognisers: list[LineRecogniser] | None = None
        self._lock = threading.Lock()
        self._page_lock = threading.Lock()
        self._pool = None

    def fingerprint(self) -> str:
        from importlib.metadata import version

        return (
            f"rapidocr-{version('rapidocr')}:onnxruntime-{self._ort.__version__}"
            f":det=PP-OCRv6-small:rec=PP-OCRv6-small:cls=off:crop={self.crop_em}em"
            f":batch={self.batch}:page-up={self.page_upscale}"
        )

    def _recogniser_list(self) -> list[LineRecogniser]:
        with self._lock:
            if self._recognisers is None:
                try:
                    self._recognisers = [
                        LineRecogniser(self.threads, self.batch) for _ in range(self.workers)
                    ]
                except BackendUnavailable:
                    raise
                except Exception as exc:  # a broken install or unreadable model file
                    raise BackendUnavailable(
                        f"rapidocr's recogniser could not load ({exc}): {PIP_LINE}"
                    ) from exc
            return self._recognisers

    def _page_engine(self) -> Any:
        """rapidocr's detection and recognition, loaded on the first page without a layout."""
        with self._lock:
            if self._engine is None:
                logging.getLogger("RapidOCR").setLevel(logging.WARNING)
                params = {
                    "Global.use_cls": False,
                    "Global.log_level": "warning",
                    "Global.text_score": 0.0,  # keep every line: the caller judges confidence
                    # Dilation merges tightly packed rows into one box (3 of 5 rows read
                    # on a 9 px test page with it, 5 of 5 without).
                    "Det.use_dilation": False,
                    "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                    "EngineConfig.onnxruntime.enable_cpu_mem_arena": True,
                    "Rec.rec_batch_num": self.batch,
                }
                rapid_ocr = _import_rapidocr()
                try:
                    self._engine = rapid_ocr(params=params)
                except Exception as exc:  # a broken install or missing model file
                    raise BackendUnavailable(
                        f"rapidocr could not load its models ({exc}): {PIP_LINE}"
                    ) from exc
            return self._engine

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        """Load the recogniser and run it once (onnxruntime optimises a graph on first use)."""
        t0 = time.perf_counter()
        blank = np.full((48, 96), 255, dtype=np.uint8)
        for k in range(len(self._recogniser_list())):
            self._recognise(k, [blank])
        return time.perf_counter() - t0

    def _executor(self):
        from concurrent.futures import ThreadPoolExecutor

        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="optimem-rapid")
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool, self._engine, self._recognisers = self._pool, None, None, None
        if pool is not None:
            pool.shutdown(wait=True)

    # -- reading --------------------------------------------------------------------------

    def cut_line(self, gray: np.ndarray, box, font_px: float) -> np.ndarray:
        """The line's pixels, `crop_em` ems tall rounded out to whole pixels: its height is
        how large the type reaches the recogniser."""
        return _lines.cut_line(gray, box, font_px, self.crop_em)

    def _crop(self, gray: np.ndarray, box, font_px: float) -> np.ndarray:
        crop = self.cut_line(gray, box, font_px)
        # Upscale tiny crops with a good filter; the recogniser's own resize to 48 px is linear.
        if crop.shape[0] < 32:
            crop = _lines.resize(crop, 48 / crop.shape[0], Image.Resampling.BICUBIC)
        return crop

    def _recognise(self, k: int, crops: list[np.ndarray]) -> tuple[list[str], list[float]]:
        return self._recogniser_list()[k].read(crops)

    def _read_lines(self, crops: list[np.ndarray]) -> tuple[list[str], list[float]]:
        if not crops:
            return [], []
        if self.workers == 1:
            return self._recognise(0, crops)
        # Deal crops out by width so each engine gets an equal share of pixels.
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / crops[i].shape[0])
        shares = [order[k :: self.workers] for k in range(self.workers)]
        pool = self._executor()
        futures = [
            pool.submit(self._recognise, k, [crops[i] for i in share]) for k, share in enumerate(shares)
        ]
        texts = [""] * len(crops)
        scores = [0.0] * len(crops)
        for share, future in zip(shares, futures, strict=True):
            t, s = future.result()
            for i, ti, si in zip(share, t, s, strict=True):
                texts[i], scores[i] = ti, si
        return texts, scores

    def _read_page(self, page: PageInput) -> list[_lines.Box]:
        factor = _lines.upscale_factor(page.font_px, self.page_upscale)
        image = page.image.convert("RGB")
        if factor > 1:
            image = image.resize((image.width * factor, image.height * factor), Image.Resampling.BICUBIC)
        engine = self._page_engine()
        with self._page_lock:
            out = engine(np.asarray(image)[:, :, ::-1], use_det=True, use_cls=False, use_rec=True)
        if out.boxes is None or out.txts is None:
            return []
        boxes = []
        for quad, text, score in zip(out.boxes, out.txts, out.scores, strict=True):
            xs, ys = quad[:, 0] / factor, quad[:, 1] / factor
            text = _lines.tidy_cjk(text) if page.has_cjk else text
            boxes.append(_lines.Box(xs.min(), ys.min(), xs.max(), ys.max(), text, float(score)))
        return boxes

    def decode(self, page: PageInput) -> Decoded:
        t0 = time.perf_counter()
        if self.use_layout and page.lines:
            gray = _lines.as_gray(page.image)
            crops = [self._crop(gray, box, page.font_px) for box in page.lines]
            ink = [i for i, c in enumerate(crops) if not _lines.is_blank(c)]
            read, read_scores = self._read_lines([crops[i] for i in ink])
            texts, scores = [""] * len(crops), [0.0] * len(crops)
            for i, t, s in zip(ink, read, read_scores, strict=True):
                texts[i], scores[i] = t, s
            texts = [_lines.tidy_cjk(t.strip()) if page.has_cjk else t.strip() for t in texts]
            texts = _lines.code_as_typed(gray, page.lines, texts, page.font_px)
            return Decoded(
                "\n".join(texts),
                _lines.mean_score([s for s, t in zip(scores, texts, strict=True) if t]),
                self.name,
                time.perf_counter() - t0,
                tuple(texts),
            )
        boxes = self._read_page(page)
        score = _lines.mean_score([b.score for b in boxes])
        if page.lines:
            per_line = _lines.assign_to_lines(boxes, page.lines)
            return Decoded("\n".join(per_line), score, self.name, time.perf_counter() - t0, tuple(per_line))
        text = _lines.join_rows(_lines.rows_by_centre(boxes))
        return Decoded(text, score, self.name, time.perf_counter() - t0)
