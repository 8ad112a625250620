"""CpuBackend: each line to the CPU engine that reads its script best.

Measured here (docs/cpu-backends.md, optimem/data/calibration.json): tesseract reads dense
Latin type at ≥97% several times faster than rapidocr, but its Chinese model tops out near
97% even at 16–24 px, while rapidocr reads Chinese at 99% from 9–10 px. So Latin lines go to
tesseract and lines that look CJK (taller boxes, judged from geometry alone) to rapidocr.
Pages aged below `blur_px` (8 px type shrunk one rung is 6.4 px) go wholly to rapidocr, which
reads blurred small type far better: a Small page aged to Tiny reads at 94–96% with rapidocr
against 89% with tesseract (default chat, measured here).
"""

from __future__ import annotations

from collections.abc import Sequence

from . import _lines
from .base import Backend, Capabilities, Decoded, PageInput


class CpuBackend(Backend):
    """tesseract for sharp Latin lines, rapidocr for CJK lines and for aged, blurred pages."""

    name = "cpu"
    capabilities = Capabilities(batches=True)

    def __init__(
        self, latin: Backend | None = None, cjk: Backend | None = None, *, blur_px: float = 7.5
    ) -> None:
        """Args:
        latin: reads sharp Latin lines (default tesseract).
        cjk: reads CJK lines and blurred pages (default rapidocr).
        blur_px: pages whose type is smaller than this (px per em, after aging) go to `cjk`.
        """
        from .rapidocr import RapidOCRBackend
        from .tesseract import TesseractBackend

        self.latin = latin or TesseractBackend()
        self.cjk = cjk or RapidOCRBackend()
        self.blur_px = blur_px

    def fingerprint(self) -> str:
        return f"cpu[latin={self.latin.fingerprint()};cjk={self.cjk.fingerprint()};blur<{self.blur_px}]"

    def decode(self, page: PageInput) -> Decoded:
        if page.font_px < self.blur_px:
            return self._renamed(self.cjk.decode(page))
        if not page.lines or not page.has_cjk:
            return self._renamed(self.latin.decode(page))
        cjk_idx = [i for i, box in enumerate(page.lines) if _lines.line_em(box, page.font_px)[1]]
        if not cjk_idx:
            return self._renamed(self.latin.decode(page))
        latin_idx = [i for i in range(len(page.lines)) if i not in set(cjk_idx)]
        texts: list[str] = [""] * len(page.lines)
        confidences: list[tuple[float, int]] = []
        seconds = 0.0
        for backend, idx in ((self.cjk, cjk_idx), (self.latin, latin_idx)):
            if not idx:
                continue
            part = backend.decode(_subset(page, idx))
            lines = part.lines or ("",) * len(idx)
            for i, text in zip(idx, lines, strict=True):
                texts[i] = text
            confidences.append((part.confidence, len(idx)))
            seconds += part.seconds
        confidence = sum(c * n for c, n in confidences) / sum(n for _, n in confidences)
        return Decoded("\n".join(texts), confidence, self.name, seconds, tuple(texts))

    def _renamed(self, decoded: Decoded) -> Decoded:
        return Decoded(
            decoded.text, decoded.confidence, self.name, decoded.seconds, decoded.lines, decoded.extra
        )

    def close(self) -> None:
        self.latin.close()
        self.cjk.close()


def _subset(page: PageInput, idx: Sequence[int]) -> PageInput:
    return PageInput(
        image=page.image,
        mode=page.mode,
        lines=tuple(page.lines[i] for i in idx),
        font_px=page.font_px,
        has_cjk=page.has_cjk,
        representation=page.representation,
    )
