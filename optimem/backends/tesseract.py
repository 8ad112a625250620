"""TesseractBackend: tesseract's LSTM reading each known line of a page, on worker threads.

Engine: the `tesserocr` binding (PyPI ships manylinux wheels with libtesseract 5.5 inside, no
compiler needed) and Debian's trained data (`tesseract-ocr-eng`, `tesseract-ocr-chi-sim`).
Measured against the `tesseract` CLI on the same pages (docs/cpu-backends.md): one
`PyTessBaseAPI` per worker thread reading line crops with PSM 7 is 1.4–2x faster than the CLI
with PSM 6 and reads small type better, because each line is cut and upscaled on its own.
tesserocr releases the GIL while it recognises, so two threads use both cores.

Without layout lines the page is read whole (PSM 6) and its lines re-sorted by centre.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import BackendUnavailable
from . import _lines
from .base import Backend, Capabilities, Decoded, PageInput, timed

# Debian's libtesseract is built with OpenMP, which thrashes on small machines (DESIGN §5:
# 4.6 s → 18–25 s per page on 2 cores). The PyPI wheel has no OpenMP; a source build against
# Debian's library does, so cap it before the library loads.
os.environ.setdefault("OMP_THREAD_LIMIT", "1")

PIP_LINE = "pip install 'optimem[tesseract]'  (the tesserocr wheel)"
APT_LINE = "apt-get install tesseract-ocr-eng tesseract-ocr-chi-sim"
_TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
    "/opt/homebrew/share/tessdata",
)
_APT_PACKAGE = {"eng": "tesseract-ocr-eng", "chi_sim": "tesseract-ocr-chi-sim"}

# (minimum em in px, upscale factor), measured on DejaVu Sans line crops (PSM 7, bilinear):
# 10 px reads 99.6% at 1x; 9 px 99.3% at 2x; 8 px 98.1% at 3x (95% at 1–2x).
LATIN_UPSCALE: tuple[tuple[float, int], ...] = ((9.5, 1), (8.5, 2), (5.5, 3), (0.0, 4))
# tesseract's Chinese model wants large glyphs: 2x up to 16 px ems, 3x below 10 px.
CJK_UPSCALE: tuple[tuple[float, int], ...] = ((20.0, 1), (10.0, 2), (0.0, 3))


def _import_tesserocr():
    try:
        import tesserocr
    except ImportError as exc:
        raise BackendUnavailable(f"the tesseract backend needs tesserocr: {PIP_LINE}") from exc
    return tesserocr


def find_tessdata(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding eng.traineddata: `explicit`, $TESSDATA_PREFIX, or Debian's place."""
    candidates = [explicit] if explicit else [os.environ.get("TESSDATA_PREFIX"), *_TESSDATA_DIRS]
    for c in candidates:
        if c and (Path(c) / "eng.traineddata").is_file():
            return Path(c)
        if c and (Path(c) / "tessdata" / "eng.traineddata").is_file():
            return Path(c) / "tessdata"
    where = explicit or ", ".join(_TESSDATA_DIRS)
    raise BackendUnavailable(
        f"no tesseract English data (eng.traineddata) in {where}: "
        f"apt-get install tesseract-ocr-eng (or set TESSDATA_PREFIX)"
    )


@cache
def _file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()[:10]


class TesseractBackend(Backend):
    """Reads pages with tesseract, line by line when the layout is known."""

    name = "tesseract"
    capabilities = Capabilities(batches=True, reads_mode=False, in_processes=True)

    def __init__(
        self,
        workers: int = 2,
        *,
        use_layout: bool = True,
        tessdata: str | os.PathLike[str] | None = None,
        cjk_lang: str = "chi_sim",
        latin_upscale: Sequence[tuple[float, int]] = LATIN_UPSCALE,
        cjk_upscale: Sequence[tuple[float, int]] = CJK_UPSCALE,
        page_psm: int = 6,
    ) -> None:
        """Args:
        workers: threads, each with its own tesseract instance (one per core is best).
        use_layout: read known line boxes (PSM 7); False reads the whole page (PSM 6).
        tessdata: folder of *.traineddata; default $TESSDATA_PREFIX or Debian's.
        cjk_lang: languages for lines of CJK pages that look like CJK (taller lines);
            chi_sim alone reads mixed Chinese/English lines better than chi_sim+eng
            (98.1% against 97.5% on the default chat at 14 px) and faster.
        latin_upscale, cjk_upscale: (minimum em px, factor) steps, first match wins.
        page_psm: page segmentation mode of the full-page fallback.
        """
        self._tesserocr = _import_tesserocr()
        self.workers = max(1, int(workers))
        self.use_layout = use_layout
        self.tessdata = find_tessdata(tessdata)
        self.cjk_lang = cjk_lang
        self.latin_upscale = tuple(latin_upscale)
        self.cjk_upscale = tuple(cjk_upscale)
        self.page_psm = page_psm
        self._local = threading.local()
        self._apis: list[Any] = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- engine ---------------------------------------------------------------------------

    def fingerprint(self) -> str:
        version = self._tesserocr.tesseract_version().split()[1]
        data = _file_digest(self.tessdata / "eng.traineddata")
        return (
            f"tesseract-{version}:eng-{data}:lstm:line-psm7:page-psm{self.page_psm}"
            f":cjk={self.cjk_lang}:up={self.latin_upscale}/{self.cjk_upscale}:bilinear"
        )

    def _check_lang(self, lang: str) -> None:
        for part in lang.split("+"):
            if not (self.tessdata / f"{part}.traineddata").is_file():
                package = _APT_PACKAGE.get(part, f"tesseract-ocr-{part.replace('_', '-')}")
                raise BackendUnavailable(
                    f"tesseract has no {part!r} language data in {self.tessdata}: apt-get install {package}"
                )

    def _api(self, lang: str, psm: int):
        """This thread's tesseract instance for (lang, psm), made on first use."""
        apis = getattr(self._local, "apis", None)
        if apis is None:
            apis = self._local.apis = {}
        api = apis.get((lang, psm))
        if api is None:
            self._check_lang(lang)
            api = self._tesserocr.PyTessBaseAPI(
                path=str(self.tessdata),
                lang=lang,
                psm=psm,
                oem=self._tesserocr.OEM.LSTM_ONLY,
                variables={"tessedit_do_invert": "0"},  # dark-on-light only: skips a re-read
            )
            apis[(lang, psm)] = api
            with self._lock:
                self._apis.append(api)
        return api

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="optimem-tess")
            return self._pool

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        """Make each worker thread's English line reader now (its first use loads the data)."""
        t0 = time.perf_counter()
        barrier = threading.Barrier(self.workers)

        def make() -> None:
            self._api("eng", 7)
            barrier.wait(timeout=30)  # holds the thread, so that every worker makes its own

        pool = self._executor()
        for future in [pool.submit(make) for _ in range(self.workers)]:
            future.result()
        return time.perf_counter() - t0

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            apis, self._apis = self._apis, []
        if pool is not None:
            pool.shutdown(wait=True)
        for api in apis:
            api.End()

    # -- reading --------------------------------------------------------------------------

    def _read_line(self, gray: np.ndarray, box, font_px: float, cjk_page: bool):
        em, cjk_line = _lines.line_em(box, font_px)
        cjk = cjk_page and cjk_line
        factor = _lines.upscale_factor(em, self.cjk_upscale if cjk else self.latin_upscale)
        crop = _lines.crop_line(gray, box, em, _lines.CJK_SPACING if cjk_line else _lines.LATIN_SPACING, 0.3)
        if _lines.is_blank(crop):
            return "", [], time.perf_counter()
        crop = _lines.resize(crop, factor, Image.Resampling.BILINEAR)
        border = max(2, round(0.3 * em * factor))
        crop = np.pad(crop, border, constant_values=255)
        api = self._api(self.cjk_lang if cjk else "eng", 7)
        api.SetImage(Image.fromarray(crop))
        text = api.GetUTF8Text().strip()
        if cjk:
            text = _lines.tidy_cjk(text)
        return text, [c / 100 for c in api.AllWordConfidences()], time.perf_counter()

    def _read_page(self, page: PageInput):
        factor = _lines.upscale_factor(page.font_px, self.latin_upscale)
        factor = min(factor, 2)  # whole pages: 3x of a 1280 page is too slow for what it buys
        image = page.image.convert("L")
        if factor > 1:
            size = (image.width * factor, image.height * factor)
            image = image.resize(size, Image.Resampling.BILINEAR)
        lang = self.cjk_lang if page.has_cjk else "eng"
        api = self._api(lang, self.page_psm)
        api.SetImage(image)
        api.Recognize()
        boxes = []
        level = self._tesserocr.RIL.TEXTLINE
        it = api.GetIterator()
        if it is not None:
            while True:
                text = it.GetUTF8Text(level)
                bbox = it.BoundingBox(level)
                if text and text.strip() and bbox:
                    x0, y0, x1, y1 = (v / factor for v in bbox)
                    t = text.strip()
                    t = _lines.tidy_cjk(t) if page.has_cjk else t
                    boxes.append(_lines.Box(x0, y0, x1, y1, t, it.Confidence(level) / 100))
                if not it.Next(level):
                    break
        return boxes

    def _decode_page(self, page: PageInput, pool: ThreadPoolExecutor) -> Decoded:
        """Read one page whole (used without a layout): a single worker does it."""
        boxes, seconds = timed(self._read_page, page)
        score = _lines.mean_score([b.score for b in boxes])
        if page.lines:
            per_line = _lines.assign_to_lines(boxes, page.lines)
            return Decoded("\n".join(per_line), score, self.name, seconds, tuple(per_line))
        text = _lines.join_rows(_lines.rows_by_centre(boxes))
        return Decoded(text, score, self.name, seconds)

    def decode_many(self, pages: Sequence[PageInput]) -> list[Decoded]:
        if any(p.has_cjk for p in pages):
            self._check_lang(self.cjk_lang)
        pool = self._executor()
        results: list[Decoded | None] = [None] * len(pages)
        line_jobs = []
        page_jobs = []
        for i, page in enumerate(pages):
            if self.use_layout and page.lines:
                gray = _lines.as_gray(page.image)
                start = time.perf_counter()
                futures = [
                    pool.submit(self._read_line, gray, box, page.font_px, page.has_cjk) for box in page.lines
                ]
                line_jobs.append((i, start, futures))
            else:
                page_jobs.append((i, pool.submit(self._decode_page, page, pool)))
        for i, start, futures in line_jobs:
            texts, scores, end = [], [], start
            for f in futures:
                text, confs, done = f.result()
                texts.append(text)
                scores.extend(confs)
                end = max(end, done)
            seconds = end - start  # wall clock from submission to its last line
            texts = _lines.code_as_typed(
                _lines.as_gray(pages[i].image), pages[i].lines, texts, pages[i].font_px
            )
            results[i] = Decoded(
                "\n".join(texts), _lines.mean_score(scores), self.name, seconds, tuple(texts)
            )
        for i, future in page_jobs:
            results[i] = future.result()
        return [r for r in results if r is not None]
