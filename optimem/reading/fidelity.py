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


def code_word_recall(pairs: list[tuple[str, str]]) -> float:
    """Share of the words of source lines recalled on lines whose indentation is exact.

    `pairs` are (source line, recalled line). Words are whitespace-separated tokens, counted
    with multiplicity; a line whose leading whitespace differs recalls none of its words, so
    the figure is "word recall with indentation". 1.0 when the sources hold no words.
    """
    words = found = 0
    for src, got in pairs:
        want = src.split()
        words += len(want)
        if src[: len(src) - len(src.lstrip())] != got[: len(got) - len(got.lstrip())]:
            continue
        have: dict[str, int] = {}
        for w in got.split():
            have[w] = have.get(w, 0) + 1
        for w in want:
            if have.get(w, 0) > 0:
                have[w] -= 1
                found += 1
    return found / words if words else 1.0
