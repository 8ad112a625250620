"""Geometry shared by the CPU OCR backends: line crops, upscaling, reading order. No engines.

The layout knows where every line is, so a layout-aware backend never needs detection: it
cuts each line out (centred, with a fixed height in ems so the recogniser sees the text at a
known size), upscales small type, and reads the crops in layout order. Without a layout,
`rows_by_centre` puts detected boxes back into reading order, and `assign_to_lines` maps
them onto known lines when a caller wants full-page detection but aligned lines. Code rows
(monospace, kept as typed) get their whitespace back from the columns their ink fills
(`code_as_typed`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..layout import LineBox, tab_stop

if TYPE_CHECKING:
    from ._glyphs import Cell

LATIN_SPACING = 1.2
"""Line height in ems of a Latin line (render.RenderOptions.line_spacing default)."""
CJK_SPACING = 1.45
"""Line height in ems of a line holding CJK (render.RenderOptions.cjk_line_spacing default)."""


def line_em(box: LineBox, font_px: float) -> tuple[float, bool]:
    """(pixels per em, looks like a CJK line) of one line box, from its geometry alone.

    CJK lines are typeset with a taller line spacing (and often a larger size), so a box
    clearly taller than `font_px` × 1.2 is read as a CJK line and its em is taken from its
    height. Only the box is used, never its known text: a decoder must read, not peek.

    Aging rounds a box out to whole pixels (`LineBox.scaled`), so a Latin row that sat off
    the pixel grid (below a taller line) grows by up to 1.5 px: on a page aged one rung
    (8 px type at 6.4 px) such a row is 9 px tall where its neighbours are 8 and CJK rows 10
    or more, and the midway limit alone (8.98 px) took every one of them for CJK (109 of the
    embedded chat's 586 Latin rows on its pages aged that way). Aged type of 4.5 px or more
    leaves room for that rounding; below it (8 px type at half size or less) a Latin row
    and a CJK row can round to one height, and the row is taken for CJK as before.
    """
    if box.em > 0:  # a line typeset at its own size (code) says so
        return box.em, False
    height = box.y1 - box.y0
    limit = font_px * (LATIN_SPACING + CJK_SPACING) / 2 + 0.5
    if font_px >= 4.5 and abs(font_px - round(font_px)) > 0.01:  # aged: rounded out
        limit = max(limit, font_px * (LATIN_SPACING + 0.05) + 1.5)
    if font_px > 0 and height > limit:
        return height / CJK_SPACING, True
    return (font_px if font_px > 0 else height / LATIN_SPACING), False


MONO_ADVANCE = 0.6021
"""Advance of one DejaVu Sans Mono glyph in ems (1233/2048), the width of one code column."""


def indent(gray: np.ndarray, box: LineBox, em: float, ink: int = 160) -> int:
    """Leading spaces of a monospace line, read from where its ink starts.

    The typesetter starts every line at the box's left edge and advances over leading spaces
    without drawing them, so the blank stretch before the first dark column, in monospace
    columns (less a glyph's left bearing, ~0.2 column), is the indentation.
    """
    band = gray[max(0, box.y0) : box.y1, max(0, box.x0) : box.x1 + 1]
    if band.size == 0:
        return 0
    cols = np.flatnonzero(band.min(axis=0) < ink)
    if cols.size == 0:
        return 0
    return max(0, round(cols[0] / (MONO_ADVANCE * em) - 0.2))


def code_as_typed(
    gray: np.ndarray, lines: Sequence[LineBox], texts: Sequence[str], font_px: float, *, cells: bool = True
) -> list[str]:
    """Each monospace line's reading with its indentation, spaces and tabs as the page shows
    them (OCR drops them): columns measured from the ink (`ink_columns`, `as_typed`), and
    with `cells` each inked column judged by the code font's own glyphs (`_glyphs`).

    Lines of pages typeset before code had rows and sizes of its own (`em` 0, the speaker
    label possibly on the same row) get only their indentation back.
    """
    from . import _glyphs

    out = []
    for text, box in zip(texts, lines, strict=True):
        if box.kind == "code" and box.em > 0:
            columns = ink_columns(gray, box, box.em)
            judged = None
            if cells and any(columns):
                inked = [k for k, c in enumerate(columns) if c]
                judged = dict(zip(inked, _glyphs.read_cells(gray, box, box.em, inked, font_px), strict=True))
            text = as_typed(text, columns, box.tabs, judged)
        elif box.kind == "code" and text:
            text = " " * indent(gray, box, font_px) + text.strip()
        out.append(text)
    return out


def ink_columns(gray: np.ndarray, box: LineBox, em: float, ink: int = 200) -> list[bool]:
    """Which monospace columns of a line hold ink, from column 0 to its last inked column.

    Column k spans [k, k+1) advances from the box's left edge; it counts as inked when a
    pixel darker than `ink` lies in its middle half (a glyph's own bearings and the blur of
    its neighbours stay out of that half, and even '.' and '|' reach into it). `ink` is
    lighter than for prose (160): aging fades thin strokes (a backtick, a "|") to grey, and
    on the code calibration corpus aged to Tiny 200 read 79.1% of code words against 67.7%
    at 160 (220: 79.1%, 235: 77.0%; sharp pages 99.6% at each).
    """
    band = gray[max(0, box.y0) : box.y1, max(0, box.x0) :]
    if band.size == 0:
        return []
    dark = band.min(axis=0) < ink
    advance = MONO_ADVANCE * em
    out: list[bool] = []
    k = 0
    while (k + 0.25) * advance < dark.size:
        lo, hi = math.floor((k + 0.25) * advance), math.ceil((k + 0.75) * advance)
        out.append(bool(dark[lo : max(lo + 1, hi)].any()))
        k += 1
    while out and not out[-1]:
        out.pop()
    return out


def as_typed(
    text: str, columns: Sequence[bool], tabs: bool = False, cells: Mapping[int, Cell] | None = None
) -> str:
    """A monospace line's reading with the whitespace the page shows put back.

    `columns` (from `ink_columns`) is the line's template: which columns hold a glyph. The
    reading, as a pattern of glyphs and spaces, is aligned to that template (`_align`), so
    a blank column becomes whitespace where OCR dropped it (indentation, the padding of
    aligned columns, "f(x)" read as "f (x)" or the reverse), a space OCR read on an inked
    column is an underscore (the one glyph OCR reads as blank), and a glyph OCR read where
    the ink is too faint to count is kept. On a line typeset with `tabs`, a blank stretch
    of two or more columns that ends on a tab stop is written as the tabs that reach it
    (`layout.tab_stop`).

    `cells` (inked column → `_glyphs.Cell`) are the code font's own glyphs matched to the
    ink: a cell that matches its glyph clearly better than the one OCR put there overrules
    OCR, and fills the columns OCR read nothing on (a lone "}", a fence's backticks).
    Without cells, OCR's usual slips on code are undone by rule (a lone "I" is a pipe, "@"
    not starting a name is a zero, curly quotes are straight).
    """
    text = " ".join(text.translate(_ASCII_LOOKALIKES).split())
    if not any(columns) or not (text or cells):
        return text
    out: list[str | int] = []  # characters, and blank columns by index
    for op, i, k in _align(text, columns):
        cell = cells.get(k) if cells else None
        if op == "match":
            out.append(k if text[i] == " " else _judge(text[i], cell))
        elif op == "underscore":
            out.append(cell.best if cell is not None and cell.score >= _CELL_SURE else "_")
        elif op == "extra" and text[i] != " " and not cells:
            out.append(text[i])
        elif op == "missed" and not columns[k]:
            out.append(k)
        elif op == "missed" and cell is not None and cell.score >= _CELL_FILL:
            out.append(cell.best)
    pieces: list[str] = []
    run: list[int] = []
    for item in [*out, ""]:
        if isinstance(item, int) and (not run or item == run[-1] + 1):
            run.append(item)
            continue
        if run:
            pieces.append(_gap(run[0], run[-1] + 1, tabs))
            run = [item] if isinstance(item, int) else []
        if isinstance(item, str):
            pieces.append(item)
    line = "".join(pieces)
    return line if cells else _ZERO.sub("0", _LONE_BAR.sub("|", line))


_CELL_SURE = 0.6
"""Correlation a cell's best glyph needs to replace what OCR read on it."""
_CELL_MARGIN = 0.05
"""...and by how much it must match better than OCR's glyph."""
_CELL_FILL = 0.5
"""Correlation a cell's best glyph needs to fill a column OCR read nothing on."""


def _judge(read: str, cell: Cell | None) -> str:
    """OCR's glyph on a column, or the cell's best glyph when it clearly matches better."""
    if cell is None or cell.best == read or cell.score < _CELL_SURE:
        return read
    return cell.best if cell.score - cell.scores.get(read, -1.0) >= _CELL_MARGIN else read


def _align(text: str, columns: Sequence[bool]) -> list[tuple[str, int, int]]:
    """The cheapest alignment of a reading's characters to a line's columns, as operations
    ("match", i, k): character i sits on column k, glyph on ink or space on blank;
    ("underscore", i, k): a space read on an inked column; ("extra", i, -1): a character
    on no column; ("missed", -1, k): a column no character was read on.

    Spaces cost half a glyph to add or drop, since OCR adds and drops them freely, and a gap
    costs as one space however many columns it spans (OCR reads any gap as one space); a
    gap missed inside a read word costs a whole glyph, so a dropped glyph is put at a word's
    edge rather than cutting a word in two ("|service" read as "service").
    """
    n, m = len(text), len(columns)
    space = [c == " " for c in text]
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    move = [[""] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        row, up = cost[i], cost[i - 1] if i else cost[0]  # `up` is only read when i > 0
        edge = i == 0 or i == n or space[i - 1] or space[i]
        for k in range(m + 1):
            best, how = row[k], move[i][k]
            if i and k:
                ink, blank = columns[k - 1], space[i - 1]
                if ink != blank:  # glyph on ink or space on blank
                    c = up[k - 1]
                    if c < best:
                        best, how = c, "match"
                elif blank:  # a space on ink: an underscore OCR did not see
                    c = up[k - 1] + 1.0
                    if c < best:
                        best, how = c, "underscore"
            if i:
                c = up[k] + (0.5 if space[i - 1] else 1.0)
                if c < best:
                    best, how = c, "extra"
            if k:
                if columns[k - 1]:
                    c = row[k - 1] + 1.0
                elif k >= 2 and not columns[k - 2]:
                    c = row[k - 1]  # a gap is one space to OCR, however wide
                else:
                    c = row[k - 1] + (0.5 if edge else 1.0)
                if c < best:
                    best, how = c, "missed"
            row[k], move[i][k] = best, how
    ops: list[tuple[str, int, int]] = []
    i, k = n, m
    while i or k:
        how = move[i][k]
        if how in ("match", "underscore"):
            i, k = i - 1, k - 1
            ops.append((how, i, k))
        elif how == "extra":
            i -= 1
            ops.append((how, i, -1))
        else:
            k -= 1
            ops.append(("missed", -1, k))
    return ops[::-1]


#: What OCR writes for ASCII glyphs of monospace code (curly quotes for straight ones, "¢"
#: for "c", "©" for DejaVu Sans Mono's dotted zero, "×" for "*"): code is read as ASCII.
_ASCII_LOOKALIKES = str.maketrans(
    {
        "‘": "'",
        "’": "'",
        "“": '"',
        "”": '"',
        "¢": "c",
        "©": "0",
        "€": "E",
        "×": "*",
        "—": "-",
        "–": "-",
        "ı": "i",
        "…": "...",
        "·": ".",
    }
)
#: A lone capital I between blanks on a code line is a pipe ("ss -tlnp I head", "a I b").
_LONE_BAR = re.compile(r"(?<=[ \t])I(?=[ \t]|$)|^I(?=[ \t])")
#: "@" not starting a name (a decorator, a handle) is DejaVu Sans Mono's dotted zero misread.
_ZERO = re.compile(r"(?<![\w.])@(?![A-Za-z_])")


def _blank_runs(columns: Sequence[bool]) -> list[tuple[int, int]]:
    """(first, past-last) column of each run of blank columns before the last inked one."""
    runs, start = [], None
    for k, inked in enumerate(columns):
        if not inked and start is None:
            start = k
        elif inked and start is not None:
            runs.append((start, k))
            start = None
    return runs


def _gap(start: int, end: int, tabs: bool) -> str:
    """The whitespace that fills columns [start, end): tabs when they land exactly on `end`."""
    if tabs and end - start >= 2:
        k, n = start, 0
        while k < end:
            k, n = tab_stop(k), n + 1
        if k == end:
            return "\t" * n
    return " " * (end - start)


def expected_chars(lines: Sequence[LineBox]) -> list[tuple[int, int]]:
    """(fewest, most) characters each line should read as, from the layout's offsets alone.

    A line holds `end - start` characters of its turn (one of them may be a space eaten at
    the break); the first line of a turn also holds its speaker label, whose length the
    decoder does not know: 6 ("user: ") to 40 characters more.
    """
    out = []
    for i, box in enumerate(lines):
        n = max(0, box.end - box.start)
        lo, hi = max(0, n - 1), n
        if box.start == 0 and (i == 0 or lines[i - 1].turn_id != box.turn_id):
            lo, hi = lo + 6, hi + 40  # (output kept as typed starts on the row after its label)
        out.append((lo, hi))
    return out


def misfit(text: str, bounds: tuple[int, int]) -> int:
    """How many characters `text` (stripped) falls outside `bounds`; 0 when it fits."""
    n = len(text.strip())
    lo, hi = bounds
    return lo - n if n < lo else n - hi if n > hi else 0


def merge_spaces(letters: str, spaces: str) -> str:
    """`letters` with the word gaps `spaces` reads added where `letters` has none.

    rapidocr reads blurred small type's letters well but glues words ("getinvolved",
    "wantto"); tesseract, upscaled, finds the gaps but misreads letters ("te" for "to").
    The two readings are aligned without their spaces, and a gap of either goes in.
    """
    from rapidfuzz.distance import Levenshtein

    a, b = letters.replace(" ", ""), spaces.replace(" ", "")
    gaps_a = _gaps(letters)
    gaps_b = _gaps(spaces)
    b_to_a: dict[int, int] = {}
    for op in Levenshtein.opcodes(a, b):
        if op.tag == "equal":
            for k in range(op.src_end - op.src_start):
                b_to_a[op.dest_start + k] = op.src_start + k
    # a gap counts only where both readings agree on the characters either side of it
    gaps = set(gaps_a) | {b_to_a[j] for j in gaps_b if j in b_to_a and b_to_a.get(j + 1) == b_to_a[j] + 1}
    out = []
    for i, ch in enumerate(a):
        out.append(ch)
        if i in gaps and i < len(a) - 1:
            out.append(" ")
    return "".join(out)


def _gaps(text: str) -> list[int]:
    """Indexes (in `text` without spaces) of the characters followed by a word gap."""
    out: list[int] = []
    n = -1
    for ch in text.strip():
        if ch == " ":
            if n >= 0 and (not out or out[-1] != n):
                out.append(n)
        else:
            n += 1
    return out


def upscale_factor(em: float, steps: Sequence[tuple[float, int]]) -> int:
    """The first factor whose minimum em `em` reaches, from `steps` of (min_em, factor)."""
    for min_em, factor in steps:
        if em >= min_em:
            return factor
    return steps[-1][1]


def crop_line(
    gray: np.ndarray, box: LineBox, em: float, height_em: float, pad_em: float = 0.25
) -> np.ndarray:
    """The line's pixels, `height_em` ems tall around its vertical centre, padded white.

    `gray` is the page as a uint8 array (H, W). Parts outside the page are white, so every
    crop of a page has the same height whatever the line's place on it.
    """
    h, w = gray.shape
    cy = (box.y0 + box.y1) / 2
    half = max(1.0, height_em * em / 2)
    y0, y1 = math.floor(cy - half), math.ceil(cy + half)
    pad = max(1, round(pad_em * em))
    x0, x1 = box.x0 - pad, box.x1 + pad
    out = np.full((y1 - y0, x1 - x0), 255, dtype=np.uint8)
    sy0, sy1, sx0, sx1 = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
    if sy1 > sy0 and sx1 > sx0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = gray[sy0:sy1, sx0:sx1]
    return out


def cut_line(gray: np.ndarray, box: LineBox, font_px: float, crop_em: float) -> np.ndarray:
    """The line's pixels, `crop_em` ems tall around its centre rounded out to whole pixels (its
    height is how large the type reaches a recogniser), padded 0.3 em either side."""
    em, _ = line_em(box, font_px)
    return crop_line(gray, box, em, crop_em, 0.3)


def is_blank(crop: np.ndarray, ink: int = 160) -> bool:
    """True when no pixel of the crop is darker than `ink`: nothing to read (engines invent
    text on empty crops)."""
    return crop.size == 0 or int(crop.min()) > ink


def resize(crop: np.ndarray, factor: float, resample: Image.Resampling) -> np.ndarray:
    """`crop` scaled by `factor` with PIL's filter (bilinear reads best for tesseract)."""
    if factor == 1:
        return crop
    image = Image.fromarray(crop)
    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return np.asarray(image.resize(size, resample))


def as_gray(image: Image.Image) -> np.ndarray:
    """The page as a (H, W) uint8 array."""
    return np.asarray(image if image.mode == "L" else image.convert("L"))


@dataclass(frozen=True)
class Box:
    """A detected text box in page pixels, with what the engine read and its score."""

    x0: float
    y0: float
    x1: float
    y1: float
    text: str
    score: float

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def rows_by_centre(boxes: Sequence[Box]) -> list[list[Box]]:
    """Boxes grouped into rows by vertical centre, rows top to bottom, boxes left to right.

    A box joins the current row when its centre lies within half the row's median height of
    the row's centre; engines' own sorts chain boxes by their tops and scramble small type.
    """
    rows: list[list[Box]] = []
    for box in sorted(boxes, key=lambda b: (b.cy, b.x0)):
        if rows:
            row = rows[-1]
            centre = sum(b.cy for b in row) / len(row)
            height = float(np.median([b.height for b in row]))
            if abs(box.cy - centre) <= max(1.0, 0.5 * min(height, box.height)):
                row.append(box)
                continue
        rows.append([box])
    return [sorted(row, key=lambda b: b.x0) for row in rows]


def join_rows(rows: Sequence[Sequence[Box]]) -> str:
    """Text of rows: boxes of a row joined by a space, rows by newlines."""
    return "\n".join(" ".join(b.text for b in row if b.text) for row in rows)


def assign_to_lines(boxes: Sequence[Box], lines: Sequence[LineBox]) -> list[str]:
    """Text per layout line: each box goes to the line whose band holds its centre.

    Boxes outside every band go to the nearest line; a line no box falls on reads "".
    """
    if not lines:
        return []
    centres = np.array([(ln.y0 + ln.y1) / 2 for ln in lines])
    per_line: list[list[Box]] = [[] for _ in lines]
    for box in boxes:
        inside = [i for i, ln in enumerate(lines) if ln.y0 <= box.cy < ln.y1]
        i = inside[0] if inside else int(np.argmin(np.abs(centres - box.cy)))
        per_line[i].append(box)
    return [" ".join(b.text for b in sorted(row, key=lambda b: b.x0) if b.text) for row in per_line]


def mean_score(scores: Sequence[float]) -> float:
    """Mean of engine scores clipped to [0, 1]; 0 when nothing was read."""
    vals = [min(1.0, max(0.0, float(s))) for s in scores]
    return sum(vals) / len(vals) if vals else 0.0


_CJK = "\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LATIN_THEN_WIDE_COLON = re.compile(r"([A-Za-z0-9])：\s*")
_WIDE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s*([,:;!?])\s*(?=[{_CJK}]|$)|^\s*([,:;!?])\s*(?=[{_CJK}])")
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}]) +(?=[{_CJK}])")
_WIDE = {",": "，", ":": "：", ";": "；", "!": "！", "?": "？"}


def tidy_cjk(text: str) -> str:
    """Undo the usual script slips of OCR on mixed Chinese/Latin lines.

    Spaces between two CJK glyphs go (tesseract spaces every glyph out); ASCII , : ; ! ?
    written between CJK glyphs become full width; a full-width colon after a Latin letter or
    digit ("user：") becomes ": ".
    """
    text = _SPACE_BETWEEN_CJK.sub("", text)
    text = _WIDE_BETWEEN_CJK.sub(lambda m: _WIDE[m.group(1) or m.group(2)], text)
    return _LATIN_THEN_WIDE_COLON.sub(r"\1: ", text)
