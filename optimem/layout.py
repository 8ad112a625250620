"""The page model that store, render and backends share: line boxes, spans, verbatim items,
placeholders.

No drawing and no I/O here, so the store and the OCR backends never import the typesetter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

CJK_CHAR = re.compile(
    r"[\u1100-\u11ff\u2e80-\u2fdf\u3000-\u30ff\u3100-\u31ff\u3200-\u4dbf\u4e00-\u9fff"
    r"\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]"
)
PLACEHOLDER = re.compile(r"<U\+([0-9A-F]{4,6})>")
TAB = 8
"""Columns between tab stops on monospace lines (tool output, code, lines with tabs)."""


def tab_stop(column: int) -> int:
    """The column a tab at `column` advances to: the next stop at least two columns on.

    A terminal's tab may advance a single column, and then a tab and a space look alike on
    the page; two columns at least keep every tab a gap that no single space makes, so a
    decoder can tell them apart from the ink alone.
    """
    stop = (column // TAB + 1) * TAB
    return stop + TAB if stop - column < 2 else stop


def placeholder(ch: str) -> str:
    """The visible stand-in for a character no bundled font can draw (OCR reads it back)."""
    return f"<U+{ord(ch):04X}>"


def restore_placeholders(text: str) -> str:
    """Turn `<U+1F600>` stand-ins in decoded text back into the characters they name."""

    def _sub(m: re.Match[str]) -> str:
        try:
            return chr(int(m.group(1), 16))
        except (ValueError, OverflowError):
            return m.group(0)

    return PLACEHOLDER.sub(_sub, text)


def speaker(role: str, name: str | None) -> str:
    """A turn's speaker as pages and text show it: "Caroline (user)", or the role alone. The
    page typesets it with ": " before the turn's first line; text in place of a page uses it too."""
    return f"{name} ({role})" if name else role


def is_cjk(text: str) -> bool:
    """True if `text` holds any CJK character."""
    return CJK_CHAR.search(text) is not None


@dataclass(frozen=True)
class LineBox:
    """One typeset line. Coordinates are pixels on the page's creation canvas."""

    x0: int
    y0: int
    x1: int
    y1: int
    text: str
    """The characters drawn on this line (placeholders spelled out)."""
    turn_id: int
    start: int
    """Offset in the turn's content of the first character on this line."""
    end: int
    """Offset in the turn's content just past the last character on this line."""
    kind: str = "text"
    """'text', or 'code' for monospace lines kept as typed: fenced code, tool output, lines
    with tabs (one source line per row, wrapped only when wider than the page)."""
    tabs: bool = False
    """The line's tabs were expanded to tab stops (`tab_stop`): a gap of two or more columns
    that ends on a stop is tabs, not spaces. Set by the typesetter; never the text itself."""
    em: float = 0.0
    """Pixels per em of this line's font on this canvas when it has its own size (code
    lines); 0 means the page's font size."""
    breaks: tuple[int, ...] = ()
    """Where the turn had its own line breaks on this prose row (prose flows, so they are not
    drawn): the number of words before each, 0 when the row starts after one. Recall puts
    them back (`Session.recall_turns`)."""

    def scaled(self, factor: float) -> LineBox:
        """This box on a canvas `factor` times the size (aging resizes pages)."""
        return LineBox(
            int(self.x0 * factor),
            int(self.y0 * factor),
            max(int(self.x0 * factor) + 1, round(self.x1 * factor)),
            max(int(self.y0 * factor) + 1, round(self.y1 * factor)),
            self.text,
            self.turn_id,
            self.start,
            self.end,
            self.kind,
            self.tabs,
            self.em * factor,
            self.breaks,
        )

    def to_json(self) -> list:
        return [
            self.x0,
            self.y0,
            self.x1,
            self.y1,
            self.text,
            self.turn_id,
            self.start,
            self.end,
            self.kind,
            self.tabs,
            self.em,
            list(self.breaks),
        ]

    @classmethod
    def from_json(cls, row: Sequence) -> LineBox:
        """A box from `to_json`'s row; rows stored before `tabs`, `em` and `breaks` existed load too."""
        box = cls(*row[:11])
        return replace(box, breaks=tuple(row[11])) if len(row) > 11 and row[11] else box


def turn_texts(rows: Sequence[tuple[LineBox, str]]) -> dict[int, str]:
    """Each turn's text from its rows as read, in page order.

    Rows join with a line break, except monospace rows, which keep the source's own breaks:
    the typesetter carries every character of a preformatted line onto its rows, so a row
    that starts where the previous one ended continues it (a wrap, joined with nothing) and
    a row that starts n characters on follows n line breaks (blank lines come back).
    """
    out: dict[int, str] = {}
    last: dict[int, LineBox] = {}
    for box, read in rows:
        prev = last.get(box.turn_id)
        if prev is None:
            out[box.turn_id] = read
        elif box.kind == prev.kind == "code" and box.start >= prev.end:
            out[box.turn_id] += "\n" * (box.start - prev.end) + read
        else:
            out[box.turn_id] = (out[box.turn_id] + "\n" + read).lstrip("\n")
        last[box.turn_id] = box
    return out


@dataclass(frozen=True)
class Span:
    """Characters [start, end) of a turn's content that a page holds."""

    turn_id: int
    start: int
    end: int


@dataclass(frozen=True)
class VerbatimItem:
    """One exact string and where it came from."""

    kind: str
    value: str
    turn_id: int
    offset: int


@dataclass(frozen=True)
class PageAids:
    """What a page keeps beside its image to be proofread: a word check per line and its rare
    words (`optimem.aids`); the store keeps them in a table of their own."""

    checks: bytes
    """The lines' word checks, concatenated in line order (`optimem.aids.linecheck`)."""
    lexicon: tuple[str, ...]
    lexicon_complete: bool
    """False when the lexicon was cut at its size cap (the page holds rare words it omits)."""
