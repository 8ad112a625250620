"""The reading aids a page keeps beside its image, written at paging and read at proofreading.

A 3-byte check of each line's words (`optimem.aids.linecheck`) and the page's rare words
(`optimem.aids.lexicon`); with them a reader knows which lines it read exactly and which words
the spelling dictionary would not offer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..layout import VerbatimItem
from . import lexicon, linecheck

#: Side-channel rows that help the reader rather than being strings to put back.
AID_KINDS = frozenset({linecheck.KIND, lexicon.KIND})

#: Marks a lexicon that was cut at its size cap (the page holds rare words it does not list).
TRUNCATED = "\u2026"


def side_channel_rows(lines: Sequence[str], text: str) -> list[VerbatimItem]:
    """The reading aids a new page keeps: its line checks and its rare words (capped)."""
    every = lexicon.rare_words(text)
    words = lexicon.capped(every, int(len(text) * lexicon.MAX_SHARE))
    complete = len(words) == len(every)
    value = lexicon.pack(words) + ("" if complete else " " + TRUNCATED)
    rows = [VerbatimItem(linecheck.KIND, linecheck.pack(lines), 0, 0)]
    if value.strip():
        rows.append(VerbatimItem(lexicon.KIND, value.strip(), 0, 0))
    return rows


@dataclass(frozen=True)
class ReadingAids:
    """What a page keeps to be proofread: line checks, rare words, speaker labels by line."""

    checks: tuple[bytes, ...] = ()
    lexicon: tuple[str, ...] = ()
    complete_lexicon: bool = False
    labels: Mapping[int, str] = field(default_factory=dict)
    """Speaker label of each line index that starts a turn."""

    @classmethod
    def from_rows(cls, rows: Sequence[VerbatimItem], labels: Mapping[int, str] | None = None) -> ReadingAids:
        checks: tuple[bytes, ...] = ()
        words: list[str] = []
        complete = True
        for row in rows:
            if row.kind == linecheck.KIND:
                checks = tuple(linecheck.unpack(row.value))
            elif row.kind == lexicon.KIND:
                parts = lexicon.unpack(row.value)
                complete = TRUNCATED not in parts
                words = [w for w in parts if w != TRUNCATED]
        return cls(checks, tuple(words), complete and bool(checks), dict(labels or {}))
