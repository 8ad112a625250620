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
#: first readings, round) → other readings by index (`Backend.alternates`).
Reread = Callable[[list[int], list[str], int], Mapping[int, Sequence[str]]]


def proofread(
    page: PageInput,
    decoded: Decoded,
    aids: ReadingAids,
    *,
    reread: Reread | None = None,
    rounds: int = 1,
    steps: Collection[str] = STEPS,
    limit: int = SEARCH_LIMIT,
) -> Proofread | None:
    """`decoded` with its misread lines corrected; None when the page has no checks to use.

    Each line that fails its check is corrected from its own reading first; only the lines
    that still fail are read again (`reread`, e.g. the other engine) and corrected from both
    readings, so the slower second reading runs on few lines. With several `rounds` of other
    readings (cheapest first), each round reads only the lines the rounds before it left
    failing, and corrects them from every reading so far. `steps` and `limit` are the
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
    readings: dict[int, list[str]] = {i: [lines[i]] for i in range(len(lines))}
    for round in range(rounds if reread is not None else 0):
        pending = [i for i in range(len(lines)) if not exact[i]]
        if not pending:
            break
        assert reread is not None
        try:
            others = reread(pending, [lines[i] for i in pending], round)
        except Exception:  # the other engine failing leaves the readings so far, unverified
            log.exception("re-reading %d lines failed; they keep the readings so far", len(pending))
            continue
        for i in pending:
            new = [t for t in others.get(i, ()) if t not in readings[i]]
            if new:
                readings[i] += new
                correct(i, readings[i])
    return Proofread(tuple(out), len(lines), sum(exact))
