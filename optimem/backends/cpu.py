"""CpuBackend: each line to the CPU engine that reads it best.

Measured here (docs/cpu-backends.md, optimem/data/calibration.json): tesseract reads dense
Latin type at ≥97% several times faster than rapidocr, but its Chinese model tops out near
97% even at 16–24 px, while rapidocr reads Chinese at 99% from 9–10 px. So Latin lines go to
tesseract and lines that look CJK (taller boxes, judged from geometry alone) to rapidocr.
Code rows (monospace, kept as typed) go to tesseract too: alone, rapidocr reads their brackets
and operators better (84.6% against 81.7% at 8 px), but both engines' readings of code rows
are judged cell by cell against the code font's own glyphs (`_glyphs`), and then tesseract
reads them as well (100% against 99.8%) at five times the speed (benchmarks/code_recall.py).
Pages aged below `blur_px` (8 px type shrunk one rung is 6.4 px) are read by `blurred`:
optimem's own line model for their Latin prose lines (`line_model`, trained on nothing but
optimem's aged type: ~4 ms a line against rapidocr's 36, and more lines right) and rapidocr
for the rest. Blurred small type defeats tesseract: a Small page aged to Tiny reads at 94–96%
with rapidocr against 89% with tesseract (default chat, measured here).

Misread lines are caught from the layout: a page knows how many characters each of its lines
holds (`LineBox.start`/`end`, never the text), so a reading two or more characters shorter
or longer than that (a dropped "a", "to the" read as "tote") is re-read by the other engine
and the reading whose length fits better is kept. A page that keeps line checks knows its
misread lines exactly: it is read once, proofread (`optimem.reading.proofread`), and only the lines
proofreading cannot make pass are re-read, through `alternates`.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from ..aids import linecheck
from . import _lines
from .base import Backend, Capabilities, Decoded, PageInput
from .base import lines_subset as _subset
from .line_model import AgedLineBackend


class CpuBackend(Backend):
    """tesseract for sharp Latin lines, rapidocr for CJK lines, optimem's line model for the
    Latin lines of aged, blurred pages."""

    name = "cpu"
    capabilities = Capabilities(batches=True, reads_mode=False, in_processes=True)

    def __init__(
        self,
        latin: Backend | None = None,
        cjk: Backend | None = None,
        blurred: Backend | None = None,
        *,
        blur_px: float = 7.5,
        recheck: bool = True,
        code_to_cjk: bool = False,
        sharp_reread: str = "unverified",
        sharp_model: bool = True,
        threads: int = 2,
    ) -> None:
        """Args:
        latin: reads sharp Latin lines (default tesseract).
        cjk: reads CJK lines (default rapidocr).
        blurred: reads pages aged below `blur_px` (default optimem's line model for their Latin
            prose lines and `cjk` for the rest; pass `cjk` itself to read them as before).
        blur_px: pages whose type is smaller than this (px per em, after aging) go to `blurred`.
        recheck: re-read lines whose reading does not fit their known character count with
            the other engine, keeping the reading that fits better.
        code_to_cjk: read code rows with `cjk` on sharp pages (rapidocr alone reads brackets
            and operators better, but with the glyph cells both read code alike and tesseract
            five times faster: benchmarks/code_recall.py).
        sharp_reread: on pages with line checks, which lines of a sharp page proofreading may
            have rapidocr read again: "unverified" (every line proofreading could not make
            pass) or "misfit" (only those whose length is also off: faster, fewer exact lines).
        sharp_model: read the Latin prose lines of sharp 8 px pages with optimem's line model
            too, on the page shrunk to the 6.4 px type it learnt (`line_model.at_model_size`),
            and only the rest with `latin`; needs `blurred` to be the line model's backend.
        threads: threads of each engine made here (tesseract's workers, onnxruntime's intra-op
            threads); 1 in each of several worker processes that share the cores
            (`worker_backend`), where more only makes the processes wait on each other.
        """
        if sharp_reread not in ("unverified", "misfit"):
            raise ValueError(f"sharp_reread must be 'unverified' or 'misfit', got {sharp_reread!r}")
        from .rapidocr import RapidOCRBackend
        from .tesseract import TesseractBackend

        self.latin = latin or TesseractBackend(workers=threads)
        self.cjk = cjk or RapidOCRBackend(threads=threads)
        if blurred is None:
            blurred = AgedLineBackend(rest=self.cjk, threads=threads)
        self.blurred = blurred
        self.blur_px = blur_px
        self.recheck = recheck
        self.code_to_cjk = code_to_cjk
        self.sharp_reread = sharp_reread
        self.sharp_model = sharp_model and isinstance(blurred, AgedLineBackend)

    def fingerprint(self) -> str:
        check = (";recheck" if self.recheck else "") + (";code=cjk" if self.code_to_cjk else "")
        check += "" if self.sharp_reread == "unverified" else f";sharp_reread={self.sharp_reread}"
        check += ";sharp=lines" if self.sharp_model else ""
        blurred = "cjk" if self.blurred is self.cjk else self.blurred.fingerprint()
        return (
            f"cpu[latin={self.latin.fingerprint()};cjk={self.cjk.fingerprint()};blur<{self.blur_px}"
            f";blurred={blurred}{check}]"
        )

    def decode(self, page: PageInput) -> Decoded:
        if page.checks:  # proofreading asks for other readings of the lines it cannot fix
            return self._first_reading(page)
        # code rows are read as typed and judged glyph by glyph (`_glyphs`): never re-read
        code = {i for i, box in enumerate(page.lines) if box.kind == "code"}
        if page.font_px < self.blur_px:
            return self._checked(page, self.blurred.decode(page), self.latin, merge=True, skip=code)
        if not page.lines:
            return self._renamed(self.latin.decode(page))
        cjk_idx = self._cjk_lines(page)
        t0 = time.perf_counter()
        modelled = self._sharp_read(page, cjk_idx)
        if not cjk_idx and not modelled:
            return self._checked(page, self.latin.decode(page), self.cjk, skip=code)
        decoded = self._read_split(page, cjk_idx, modelled, time.perf_counter() - t0)
        return self._checked(page, decoded, self.cjk, skip=set(cjk_idx) | code)

    def _first_reading(self, page: PageInput) -> Decoded:
        """Each line read once by the engine that reads it best, indentation put back."""
        if page.font_px < self.blur_px:
            return self._indented(page, self.blurred.decode(page))
        if not page.lines:
            return self._renamed(self.latin.decode(page))
        cjk_idx = self._cjk_lines(page)
        t0 = time.perf_counter()
        read = self._sharp_read(page, cjk_idx) | self._cells_read(page, cjk_idx)
        return self._indented(page, self._read_split(page, cjk_idx, read, time.perf_counter() - t0))

    def _cells_read(self, page: PageInput, cjk: Collection[int]) -> dict[int, tuple[str, float]]:
        """The code rows of a sharp page whose line check their glyph cells alone pass, read
        so: each inked column matched against the code font's own glyphs (`_glyphs`), with no
        OCR engine. Sharp rows are drawn exactly as the templates are, so nearly every row
        passes (119 of 119 on the code corpus at Small); the rest (a letter with a diacritic,
        a glyph outside ASCII) go to `latin`, whose reading the cells then judge as before.
        Needs the page's line checks (proofreading's): without them, nothing is read here."""
        if not page.checks or len(page.checks) != len(page.lines) or page.font_px < self.blur_px:
            return {}
        rows = [
            i
            for i, box in enumerate(page.lines)
            if box.kind == "code" and box.em > 0 and i not in cjk and page.checks[i]
        ]
        if not rows:
            return {}
        gray = _lines.as_gray(page.image)
        boxes = [page.lines[i] for i in rows]
        texts = _lines.code_as_typed(gray, boxes, [""] * len(rows), page.font_px)
        return {
            i: (text, 1.0)
            for i, text in zip(rows, texts, strict=True)
            if linecheck.verified(text, page.checks[i])
        }

    def _read_split(
        self,
        page: PageInput,
        cjk_idx: Sequence[int],
        modelled: dict[int, tuple[str, float]] | None = None,
        model_seconds: float = 0.0,
    ) -> Decoded:
        """Lines `cjk_idx` read by the CJK engine, those the line model reads at this size by
        it (`sharp_model`), and the rest by the Latin engine, as one page. `modelled`: the
        lines read already (by the model, or by their glyph cells), with their confidence."""
        cjk = set(cjk_idx)
        texts: list[str] = [""] * len(page.lines)
        t0 = time.perf_counter()
        if modelled is None:
            modelled = self._sharp_read(page, cjk)
        seconds, weighted = model_seconds + time.perf_counter() - t0, 0.0
        for i, (text, score) in modelled.items():
            texts[i] = text
            weighted += score
        for backend, idx in (
            (self.cjk, sorted(cjk)),
            (self.latin, [i for i in range(len(page.lines)) if i not in cjk and i not in modelled]),
        ):
            if not idx:
                continue
            part = backend.decode(_subset(page, idx))
            for i, text in zip(idx, part.lines or ("",) * len(idx), strict=True):
                texts[i] = text
            weighted += part.confidence * len(idx)
            seconds += part.seconds
        return Decoded("\n".join(texts), weighted / len(page.lines), self.name, seconds, tuple(texts))

    def _sharp_read(self, page: PageInput, cjk: Collection[int]) -> dict[int, tuple[str, float]]:
        """The line model's (text, confidence) of the Latin prose lines of a sharp page it
        reads at its size (none without `sharp_model`, or at other sizes)."""
        if not self.sharp_model or page.font_px < self.blur_px:
            return {}
        assert isinstance(self.blurred, AgedLineBackend)
        return {i: read for i, read in self.blurred.read_lines(page).items() if i not in cjk}

    def _cjk_lines(self, page: PageInput) -> list[int]:
        """Lines for the CJK engine: CJK lines (from geometry), and code rows with `code_to_cjk`."""
        return [
            i
            for i, box in enumerate(page.lines)
            if (page.has_cjk and _lines.line_em(box, page.font_px)[1])
            or (self.code_to_cjk and box.kind == "code")
        ]

    def alternates(
        self, page: PageInput, lines: Sequence[int], readings: Sequence[str]
    ) -> dict[int, list[str]]:
        """The other engines' readings of these Latin lines: what proofreading tries next. On a
        blurred page, where the line model read first, the second line model's first, then
        tesseract's and (where the line model read first) rapidocr's, each also as
        the first reading's letters with the word gaps of both. On a sharp page read by
        tesseract, rapidocr's; `sharp_reread="misfit"` sends only lines whose length is off to
        rapidocr (the slower engine): faster, fewer lines exact."""
        blurred = page.font_px < self.blur_px
        # code rows are read as typed and judged glyph by glyph (`_glyphs`): never re-read
        skip = {i for i, box in enumerate(page.lines) if box.kind == "code"}
        skip |= set() if blurred else set(self._cjk_lines(page))
        idx = [i for i in lines if i not in skip and not _lines.line_em(page.lines[i], page.font_px)[1]]
        if not blurred and self.sharp_reread == "misfit":  # rapidocr is the slower engine
            bounds = _lines.expected_chars(page.lines)
            first_read = dict(zip(lines, readings, strict=True))
            idx = [i for i in idx if _lines.misfit(first_read[i], bounds[i]) >= 2]
        if not idx:
            return {}
        # the lines the line model read first (on a blurred page, or a sharp one with sharp_model)
        modelled: set[int] = set()
        if isinstance(self.blurred, AgedLineBackend) and (blurred or self.sharp_model):
            modelled = set(self.blurred.model_lines(page))
        if blurred:  # tesseract, and rapidocr where the model read
            others = [(self.latin, idx), (self.cjk, [i for i in idx if i in modelled])]
        else:  # rapidocr, and tesseract (at full size) where the model read
            others = [(self.cjk, idx), (self.latin, [i for i in idx if i in modelled])]
        first = dict(zip(lines, readings, strict=True))
        found: dict[int, list[str]] = {i: [] for i in idx}
        if blurred and modelled:  # the second line model's opinion (`AgedLineBackend.second_reading`)
            assert isinstance(self.blurred, AgedLineBackend)
            for i, text in self.blurred.second_reading(page, [i for i in idx if i in modelled]).items():
                found[i].append(text)
        for other, some in others:
            if not some:
                continue
            again = self._indented(_subset(page, some), other.decode(_subset(page, some)))
            for i, text in zip(some, again.lines or ("",) * len(some), strict=True):
                # the first reading's letters with the word gaps of both: each engine is right
                # about one of the two where the first reader was rapidocr or the line model
                merge = blurred or i in modelled
                found[i] += [_lines.merge_spaces(first[i], text), text] if merge else [text]
        return {i: [t for t in dict.fromkeys(texts) if t and t != first[i]] for i, texts in found.items()}

    def _checked(
        self,
        page: PageInput,
        decoded: Decoded,
        other: Backend,
        *,
        merge: bool = False,
        skip: Collection[int] = (),
    ) -> Decoded:
        """`decoded` with its misfit Latin lines re-read by `other`, keeping the better fit.

        With `merge` (a blurred page read by rapidocr, re-read by tesseract) the candidate is
        rapidocr's letters with the word gaps of both readings, since each engine is right about
        one of the two; otherwise it is the other engine's reading.
        """
        if decoded.lines is None or len(decoded.lines) != len(page.lines):
            return self._renamed(decoded)
        decoded = self._indented(page, decoded)
        read = decoded.lines or ()
        if not self.recheck:
            return decoded
        bounds = _lines.expected_chars(page.lines)
        misfit = [
            i
            for i, (text, box) in enumerate(zip(read, page.lines, strict=True))
            if _lines.misfit(text, bounds[i]) >= 2
            and not _lines.line_em(box, page.font_px)[1]
            and i not in skip
        ]
        if not misfit:
            return self._renamed(decoded)
        again = other.decode(_subset(page, misfit))
        texts = list(read)
        kept = 0
        again = self._indented(_subset(page, misfit), again)
        for i, text in zip(misfit, again.lines or ("",) * len(misfit), strict=True):
            if merge:
                text = _lines.merge_spaces(texts[i], text)
                better = text != texts[i] and _lines.misfit(text, bounds[i]) <= _lines.misfit(
                    texts[i], bounds[i]
                )
            else:
                better = _lines.misfit(text, bounds[i]) < _lines.misfit(texts[i], bounds[i])
            if better:
                texts[i] = text
                kept += 1
        extra = dict(decoded.extra) | {"rechecked_lines": len(misfit), "replaced_lines": kept}
        seconds = decoded.seconds + again.seconds
        return Decoded("\n".join(texts), decoded.confidence, self.name, seconds, tuple(texts), extra)

    def _indented(self, page: PageInput, decoded: Decoded) -> Decoded:
        """Code lines of pages typeset before code had its own rows given back their
        indentation (the engines themselves give newer code rows their spaces and tabs)."""
        if decoded.lines is None or not any(box.kind == "code" and not box.em for box in page.lines):
            return self._renamed(decoded)
        texts = _lines.code_as_typed(_lines.as_gray(page.image), page.lines, decoded.lines, page.font_px)
        return Decoded(
            "\n".join(texts), decoded.confidence, self.name, decoded.seconds, tuple(texts), decoded.extra
        )

    def _renamed(self, decoded: Decoded) -> Decoded:
        return Decoded(
            decoded.text, decoded.confidence, self.name, decoded.seconds, decoded.lines, decoded.extra
        )

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        seconds = self.latin.warm_up(batch_sizes) + self.cjk.warm_up(batch_sizes)
        return seconds + (0.0 if self.blurred is self.cjk else self.blurred.warm_up(batch_sizes))

    def close(self) -> None:
        self.latin.close()
        self.cjk.close()
        self.blurred.close()
