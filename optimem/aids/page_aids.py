"""The reading aids a page keeps beside its image, written at paging and read at proofreading.

A 3-byte check of each line's words (`optimem.aids.linecheck`) and the page's rare words
(`optimem.aids.lexicon`); with them a reader knows which lines it read exactly and which words
the spelling dictionary would not offer. The store keeps them as a `PageAids` record of their
own (`Store.reading_aids`), apart from the page's verbatim strings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..layout import PageAids
from . import lexicon, linecheck


def page_aids(lines: Sequence[str], text: str) -> PageAids:
    """The reading aids a new page keeps: its line checks and its rare words (capped)."""
    every = lexicon.rare_words(text)
    words = lexicon.capped(every, int(len(text) * lexicon.MAX_SHARE))
    return PageAids(linecheck.pack(lines), tuple(words), lexicon_complete=len(words) == len(every))


@dataclass(frozen=True)
class ReadingAids:
    """What a page keeps to be proofread: line checks, rare words, speaker labels by line."""

    checks: tuple[bytes, ...] = ()
    lexicon: tuple[str, ...] = ()
    complete_lexicon: bool = False
    """True when the lexicon holds every rare word of the page (and the page has checks)."""
    labels: Mapping[int, str] = field(default_factory=dict)
    """Speaker label of each line index that starts a turn."""

    @classmethod
    def from_kept(cls, kept: PageAids, labels: Mapping[int, str] | None = None) -> ReadingAids:
        checks = tuple(linecheck.unpack(kept.checks))
        return cls(checks, kept.lexicon, kept.lexicon_complete and bool(checks), dict(labels or {}))
