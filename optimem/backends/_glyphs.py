"""Read the cells of monospace rows by matching them against the code font's own glyphs.

Code rows are typeset in one monospace font (DejaVu Sans Mono) on a grid of columns whose
origin and pitch a decoder knows from the layout (the row's box and em), so each inked
column holds exactly one glyph that can be compared, pixel for pixel, with that font's
printable ASCII glyphs drawn at the same size and resampled as the page was when it aged.
OCR engines read code with a language model trained on prose: they drop backticks, read a
lone "}" as "1" and "|" as "I". The cell matcher has no such prior, so it is the judge of
single glyphs where OCR and ink disagree (`optimem.backends._lines.as_typed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import fonts
from ..layout import LineBox

CHARS = "".join(chr(c) for c in range(33, 127))
"""The glyphs cells are matched against: printable ASCII (a space is a blank column)."""
BASELINE = 0.78
"""Where the typesetter puts a row's baseline, as a share of the row's height (typeset._layout)."""
# Ratios of a page's canvas after aging to the one it was typeset on (the mode ladder).
_AGING = (1.0, 0.8, 0.625, 0.5, 0.4)


@dataclass(frozen=True)
class Cell:
    """The best glyphs for one inked column: scores are normalised correlations in [-1, 1]."""

    best: str
    score: float
    scores: dict[str, float]


def creation_size(em: float, page_px: float | None = None) -> tuple[int, float]:
    """(font px the row was typeset at, factor the page was resized by since), from the
    row's em now: the first aging factor that makes the em, and the page's own font size
    `page_px` (which was a whole number of pixels too), whole numbers of pixels."""

    def whole(v: float) -> bool:
        return abs(v - round(v)) < 0.02 and round(v) >= 4

    for factor in _AGING:
        if whole(em / factor) and (page_px is None or whole(page_px / factor)):
            return round(em / factor), factor
    return max(4, round(em)), em / max(4, round(em))


@cache
def _templates(path: Path, size: int, factor: float, width: int, height: int, lifts: int) -> np.ndarray:
    """Each of CHARS drawn at `size` px in a cell as the typesetter places it (two pixels in
    from the left, on the row's baseline), resampled by `factor` as aging does, at four
    sub-pixel phases (quarter pixels right) and, on aged pages, three heights (half a pixel
    up or down): ink as float32 (phases·heights·len(CHARS), height, width)."""
    font = fonts.load(path, size)
    row_h = max(size + 1, round(size * 1.2))
    # a canvas whose sides scale by exactly `factor` to whole pixels, as the page's did
    step = Fraction(factor).limit_denominator(16).denominator
    big_w, big_h = (step * math.ceil((n + 2) / factor / step) for n in (width, height))
    big, small = (big_w, big_h), (round(big_w * factor), round(big_h * factor))
    out = []
    for phase in range(4):
        for lift in range(-(lifts // 2), lifts // 2 + 1):
            x = (2 + phase / 4) / factor
            y = round(row_h * BASELINE) + lift / 2 / factor
            for ch in CHARS:
                image = Image.new("L", big, 255)
                ImageDraw.Draw(image).text((x, y), ch, font=font, fill=0, anchor="ls")
                if factor != 1.0:
                    image = image.resize(small, Image.Resampling.LANCZOS)
                out.append(255.0 - np.asarray(image, dtype=np.float32)[:height, :width])
    return np.stack(out)


@cache
def _bank(
    path: Path, size: int, factor: float, width: int, height: int, lifts: int, a: int, b: int
) -> np.ndarray:
    """The templates' columns [a, b) of the cell, each zero-mean and unit-norm there."""
    return np.stack([_normalise(t) for t in _templates(path, size, factor, width, height, lifts)[:, :, a:b]])


def _normalise(ink: np.ndarray) -> np.ndarray:
    a = ink - ink.mean()
    norm = float(np.sqrt((a * a).sum()))
    return a / norm if norm > 0 else a


def read_cells(
    gray: np.ndarray, box: LineBox, em: float, columns: list[int], page_px: float | None = None
) -> list[Cell]:
    """The best glyph for each of `columns` (indexes of inked columns) of a monospace row.

    Only the column's own pixels are compared (the neighbours' ink would make a "." look
    like whatever stands beside it), at horizontal offsets of -1..+1 px and four sub-pixel
    phases (words are stamped at whole pixels, so a glyph sits up to half a pixel off the
    grid), against every template cut to the same columns.
    """
    path = fonts.font_files().mono
    size, factor = creation_size(em, page_px)
    advance = fonts.load(path, size).getlength(" ") * factor
    height = box.y1 - box.y0
    width = math.ceil(advance) + 4
    lifts = 1 if factor == 1.0 else 3
    h, w = gray.shape
    out: list[Cell] = []
    for k in columns:
        origin = box.x0 + k * advance
        left = math.floor(origin - 2)
        lo, hi = round(origin), round(origin + advance)
        best = np.full(len(CHARS), -1.0, dtype=np.float32)
        for dx in (-1, 0, 1):
            x = left + dx
            a, b = max(0, lo - x), min(width, hi - x)
            if b <= a:
                continue
            cell = np.full((height, b - a), 255, dtype=np.float32)
            y0, y1, x0, x1 = max(0, box.y0), min(h, box.y1), max(0, x + a), min(w, x + b)
            if y1 > y0 and x1 > x0:
                cell[y0 - box.y0 : y1 - box.y0, x0 - x - a : x1 - x - a] = gray[y0:y1, x0:x1]
            bank = _bank(path, size, factor, width, height, lifts, a, b)
            corr = np.tensordot(bank, _normalise(255.0 - cell), axes=([1, 2], [0, 1]))
            best = np.maximum(best, corr.reshape(-1, len(CHARS)).max(axis=0))
        i = int(best.argmax())
        out.append(Cell(CHARS[i], float(best[i]), {c: float(v) for c, v in zip(CHARS, best, strict=True)}))
    return out
