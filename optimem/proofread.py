"""Proofreading a decoded page against what the page keeps beside its image.

A page keeps two reading aids in its side channel: a 3-byte check of each line's words
(`optimem.linecheck`) and its rare words (`optimem.lexicon`); the memory also knows each
turn's speaker label without OCR. After any backend has read a page line by line, every line
that fails its check is corrected (`optimem.correction.Corrector`) from the backend's reading
and the other readings it offers (`Decoded.extra["alternates"]`). A line whose correction
passes the check is exact in its words; one that does not keeps the cheapest correction
(prose only, and only when the lexicon holds every rare word of the page) or its reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from . import lexicon, linecheck
from .backends import Backend, Decoded, PageInput
from .correction import Corrector
from .layout import is_cjk
from .verbatim import VerbatimItem

#: Appended to the backend's fingerprint for the cached text: proofread text is not raw text.
FINGERPRINT_TAG = "+proofread1"
#: Marks a lexicon that was cut at its size cap (the page holds rare words it does not list).
TRUNCATED = "\u2026"


def fingerprint(backend: Backend) -> str:
    """The cache key of text this backend reads and this module proofreads."""
    return backend.fingerprint() + FINGERPRINT_TAG


def side_channel_rows(lines: Sequence[str], text: str) -> list[VerbatimItem]:
    """The reading aids a new page keeps: its line checks and its rare words (capped)."""
    cap = int(len(text) * lexicon.MAX_SHARE)
    words = lexicon.rare_words(text, max_chars=cap)
    complete = len(words) == len(lexicon.rare_words(text))
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


@dataclass(frozen=True)
class Proofread:
    """A page's lines after proofreading, and how many of them pass their checks."""

    lines: tuple[str, ...]
    checked: int
    verified: int


def proofread(page: PageInput, decoded: Decoded, aids: ReadingAids) -> Proofread | None:
    """`decoded` with its misread lines corrected; None when the page has no checks to use."""
    lines = decoded.lines
    if lines is None or not aids.checks or len(aids.checks) != len(lines) or len(page.lines) != len(lines):
        return None
    alternates: Mapping[int, Sequence[str]] = decoded.extra.get("alternates") or {}
    corrector = Corrector(aids.lexicon)
    out: list[str] = []
    n_verified = 0
    for i, (line, box, check) in enumerate(zip(lines, page.lines, aids.checks, strict=True)):
        if linecheck.verified(line, check):
            out.append(line)
            n_verified += 1
            continue
        prose = box.kind == "text" and not is_cjk(line)
        fix = corrector.correct([line, *alternates.get(i, ())], check, label=aids.labels.get(i), prose=prose)
        n_verified += fix.verified
        out.append(fix.text if fix.verified or (prose and aids.complete_lexicon) else line)
    return Proofread(tuple(out), len(lines), n_verified)
