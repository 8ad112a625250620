"""Fidelity of recalled text against its source: pure functions, hand-checked in tests."""

from __future__ import annotations

import re

from rapidfuzz.distance import Levenshtein

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends (Fox-style scoring)."""
    return _WS.sub(" ", text).strip()


def edit_distance(a: str, b: str) -> int:
    """Character Levenshtein distance."""
    return Levenshtein.distance(a, b)


def fidelity(recalled: str, source: str) -> float:
    """1 − Levenshtein(recalled, source) / len(source) after whitespace normalisation, in [0, 1].

    An empty source is recalled perfectly only by an empty text.
    """
    src, out = normalise(source), normalise(recalled)
    if not src:
        return 1.0 if not out else 0.0
    return max(0.0, 1.0 - edit_distance(out, src) / len(src))
