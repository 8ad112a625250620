"""CpuBackend: each line to the CPU engine that reads its script best.

Measured here (docs/cpu-backends.md, optimem/data/calibration.json): tesseract reads dense
Latin type at ≥97% several times faster than rapidocr, but its Chinese model tops out near
97% even at 16–24 px, while rapidocr reads Chinese at 99% from 9–10 px. So Latin lines go to
tesseract and lines that look CJK (taller boxes, judged from geometry alone) to rapidocr.
"""

from __future__ import annotations

from collections.abc import Sequence

from . import _lines
from .base import Backend, Capabilities, Decoded, PageInput


class CpuBackend(Backend):
    """tesseract for Latin lines, rapidocr for CJK lines; whole pages go to tesseract."""

    name = "cpu"
    capabilities = Capabilities(uses_layout=True, batches=True)

    def __init__(self, latin: Backend | None = None, cjk: Backend | None = None) -> None:
        from .rapidocr import RapidOCRBackend
        from .tesseract import TesseractBackend

        self.latin = latin or TesseractBackend()
        self.cjk = cjk or RapidOCRBackend()

    def fingerprint(self) -> str:
        return f"cpu[latin={self.latin.fingerprint()};cjk={self.cjk.fingerprint()}]"

    def decode(self, page: PageInput) -> Decoded:
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
