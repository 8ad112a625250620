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
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .. import fonts
from ..layout import LineBox

CHARS = "".join(chr(c) for c in range(33, 127))
"""The glyphs cells are matched against: printable ASCII (a space is a blank column)."""
BASELINE = 0.78
"""Where the typesetter puts a row's baseline, as a share of the row's height (render._draw)."""
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
def _templates(
    path: Path, size: int, factor: float, width: int, height: int, phase: int, lift: int
) -> np.ndarray:
    """Each of CHARS drawn at `size` px in a cell as the typesetter places it (two pixels in
    from the left, on the row's baseline), shifted right by `phase` quarter pixels and down
    by `lift` half pixels of the page as it is now, and resampled by `factor` as aging does:
    float32 (len(CHARS), height, width), each zero-mean and unit-norm."""
    font = fonts.load(path, size)
    row_h = max(size + 1, round(size * 1.2))
    big = (max(1, round(width / factor)), max(1, round(height / factor)))
    x = (2 + phase / 4) / factor
    y = round(row_h * BASELINE) + lift / 2 / factor
    out = np.zeros((len(CHARS), height, width), dtype=np.float32)
    for i, ch in enumerate(CHARS):
        image = Image.new("L", big, 255)
        ImageDraw.Draw(image).text((x, y), ch, font=font, fill=0, anchor="ls")
        if image.size != (width, height):
            image = image.resize((width, height), Image.Resampling.LANCZOS)
        out[i] = _normalise(np.asarray(image, dtype=np.float32))
    return out


def _normalise(a: np.ndarray) -> np.ndarray:
    a = 255.0 - a
    a = a - a.mean()
    norm = float(np.sqrt((a * a).sum()))
    return a / norm if norm > 0 else a


def read_cells(
    gray: np.ndarray, box: LineBox, em: float, columns: list[int], page_px: float | None = None
) -> list[Cell]:
    """The best glyph for each of `columns` (indexes of inked columns) of a monospace row.

    Each cell is cut with two pixels of margin on either side and compared at horizontal
    offsets of -1..+1 px and four sub-pixel phases (words are stamped at whole pixels, so a
    glyph sits up to half a pixel off the grid) against every template.
    """
    path = fonts.font_files().mono
    size, factor = creation_size(em, page_px)
    advance = fonts.load(path, size).getlength(" ") * factor
    height = box.y1 - box.y0
    width = math.ceil(advance) + 4
    lifts_sub = (0,) if factor == 1.0 else (-1, 0, 1)
    bank = np.concatenate(
        [_templates(path, size, factor, width, height, p, v) for p in range(4) for v in lifts_sub]
    )
    shifts = (-1, 0, 1)
    lifts = (0,)
    h, w = gray.shape
    out: list[Cell] = []
    for k in columns:
        origin = box.x0 + k * advance
        left = math.floor(origin - 2)
        # the neighbours' ink is whitened: only this column's own pixels are compared, or
        # a "." would match the ink of the glyphs beside it
        lo, hi = round(origin), round(origin + advance)
        views = []
        for dy in lifts:
            for dx in shifts:
                x, y = left + dx, box.y0 + dy
                cell = np.full((height, width), 255, dtype=np.float32)
                y0, y1 = max(0, y), min(h, y + height)
                x0, x1 = max(0, x, lo), min(w, x + width, hi)
                if y1 > y0 and x1 > x0:
                    cell[y0 - y : y1 - y, x0 - x : x1 - x] = gray[y0:y1, x0:x1]
                views.append(_normalise(cell))
        corr = np.tensordot(bank, np.stack(views), axes=([1, 2], [1, 2]))  # (4·chars, views)
        best = corr.max(axis=1).reshape(-1, len(CHARS)).max(axis=0)
        i = int(best.argmax())
        out.append(Cell(CHARS[i], float(best[i]), {c: float(v) for c, v in zip(CHARS, best, strict=True)}))
    return out
