"""Proofreading a decoded page against what the page keeps beside its image.

A page keeps two reading aids in its side channel: a 3-byte check of each line's words
(`optimem.aids.linecheck`) and its rare words (`optimem.aids.lexicon`); the memory also knows each
turn's speaker label without OCR. After any backend has read a page line by line, every line
that fails its check is corrected (`optimem.reading.correction.Corrector`) from the backend's reading,
and where that fails, from the other readings the backend offers (`Backend.alternates`). A line whose correction
passes the check is exact in its words; one that does not keeps the cheapest correction
(prose only, and only when the lexicon holds every rare word of the page) or its reading.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from ..aids import lexicon, linecheck
from ..aids.page_aids import ReadingAids
from ..backends import Backend, Decoded, PageInput
from ..layout import is_cjk
from .correction import SEARCH_LIMIT, STEPS, Corrector

log = logging.getLogger("optimem")

#: Appended to the backend's fingerprint for the cached text: proofread text is not raw text.
FINGERPRINT_TAG = "+proofread1"


def warm_up() -> None:
    """Load what proofreading reads once per process: the spelling index and its word list."""
    from ..aids.speller import speller
    from .correction import _contractions

    speller()
    lexicon.dictionary_words()
    _contractions()


def fingerprint(backend: Backend) -> str:
    """The cache key of text this backend reads and this module proofreads."""
    return backend.fingerprint() + FINGERPRINT_TAG


@dataclass(frozen=True)
class Proofread:
    """A page's lines after proofreading, and how many of them pass their checks."""

    lines: tuple[str, ...]
    checked: int
    verified: int


#: Asked for other readings of lines proofreading could not make pass: (indices, their
#: readings) → other readings by index (`Backend.alternates`).
Reread = Callable[[list[int], list[str]], Mapping[int, Sequence[str]]]


def proofread(
    page: PageInput,
    decoded: Decoded,
    aids: ReadingAids,
    *,
    reread: Reread | None = None,
    steps: Collection[str] = STEPS,
    limit: int = SEARCH_LIMIT,
) -> Proofread | None:
    """`decoded` with its misread lines corrected; None when the page has no checks to use.

    Each line that fails its check is corrected from its own reading first; only the lines
    that still fail are read again (`reread`, e.g. the other engine) and corrected from both
    readings, so the slower second reading runs on few lines. `steps` and `limit` are the
    corrector's (`optimem.reading.correction`); leaving steps out measures what each adds
    (benchmarks/proofread.py).
    """
    lines = decoded.lines
    if lines is None or not aids.checks or len(aids.checks) != len(lines) or len(page.lines) != len(lines):
        return None
    corrector = Corrector(aids.lexicon, steps=steps, limit=limit)
    out = list(lines)
    exact = [linecheck.verified(line, check) for line, check in zip(lines, aids.checks, strict=True)]
    prose = [box.kind == "text" and not is_cjk(line) for box, line in zip(page.lines, lines, strict=True)]

    def correct(i: int, readings: Sequence[str]) -> None:
        label = aids.labels.get(i)
        box = page.lines[i]
        length = box.end - box.start + (len(label) + 1 if label else 0)
        try:
            fix = corrector.correct(readings, aids.checks[i], label=label, prose=prose[i], length=length)
        except Exception:  # one line's trouble never costs the page: it keeps its reading
            log.exception("correcting line %d failed; it keeps its reading, unverified", i)
            return
        exact[i] = fix.verified
        if fix.verified or (prose[i] and aids.complete_lexicon):
            out[i] = fix.text

    for i in range(len(lines)):
        if not exact[i]:
            correct(i, [lines[i]])
    pending = [i for i in range(len(lines)) if not exact[i]]
    if pending and reread is not None:
        try:
            others = reread(pending, [lines[i] for i in pending])
        except Exception:  # the second engine failing leaves the first reading, unverified
            log.exception("re-reading %d lines failed; they keep their first reading", len(pending))
            others = {}
        for i in pending:
            if others.get(i):
                correct(i, [lines[i], *others[i]])
    return Proofread(tuple(out), len(lines), sum(exact))
