"""Benchmark arithmetic as pure functions: answer survival, savings, windows, image tokens.

No I/O and no memory here, so every figure the benchmark reports can be checked by hand
(tests/bench/test_metrics.py does).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from rapidfuzz import fuzz

from ..reading.fidelity import fidelity

#: Share of an answer's characters that must match (fuzzy) for it to count as found.
ANSWER_THRESHOLD = 0.9

_WS = re.compile(r"\s+")
_EDGE_PUNCT = " \t\n.,;:!?\"'`()[]{}«»“”‘’"
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-"})


def normalise_answer(text: str) -> str:
    """NFKC, case-folded, typographic quotes and dashes made plain, whitespace collapsed,
    punctuation stripped from both ends."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return _WS.sub(" ", text).strip(_EDGE_PUNCT)


def answer_score(answer: str, text: str) -> float:
    """How well `answer` appears somewhere in `text`, in [0, 1] (1 = found exactly).

    Both sides are normalised; the score is rapidfuzz's partial ratio: the Indel similarity
    2·matches / (len(answer) + len(stretch)) of the answer to the best-aligned stretch of
    the text (about the answer's length).
    """
    a, t = normalise_answer(answer), normalise_answer(text)
    if not a or not t:
        return 0.0
    if a in t:
        return 1.0
    return fuzz.partial_ratio(a, t) / 100.0


def answer_found(answer: str, text: str, threshold: float = ANSWER_THRESHOLD) -> bool:
    """True when the normalised answer matches a stretch of the text at ≥ `threshold`.

    Short answers must match exactly: one wrong character in ``OPS-4821`` scores 0.875.
    """
    return answer_score(answer, text) >= threshold


_WORD = re.compile(r"\w+")


def answer_words(text: str) -> list[str]:
    """The normalised words of `text` (NFKC, case-folded, punctuation dropped)."""
    return _WORD.findall(normalise_answer(text))


def answer_exact(answer: str, text: str) -> bool:
    """True when the answer's normalised words appear in `text`'s as one unbroken sequence.

    The strict test: "K-200A" is not found in "K-2004", nor "near a park" in "near park".
    """
    a, t = answer_words(answer), answer_words(text)
    if not a:
        return False
    n = len(a)
    return any(t[i : i + n] == a for i in range(len(t) - n + 1) if t[i] == a[0])


def share(hits: int, total: int) -> float | None:
    """hits ÷ total, or None when there is nothing to count (never a misleading 0 or 1)."""
    return hits / total if total else None


def savings(text_tokens: int, seen_tokens: int) -> float:
    """How many times fewer tokens the model sees than the full history: text ÷ seen."""
    if seen_tokens <= 0:
        return float("inf") if text_tokens else 1.0
    return text_tokens / seen_tokens


def compression(text_tokens: int, positions: int) -> float:
    """Text tokens a page holds ÷ the positions (or image tokens) it costs."""
    return text_tokens / positions if positions else 0.0


def window_start(token_counts: Sequence[int], budget: int) -> int:
    """Index of the oldest turn a sliding window of `budget` tokens keeps.

    The window keeps the newest turns while their text fits; the turns before the returned
    index are dropped. A single newest turn larger than the budget is dropped too (the
    window then holds nothing), so the window never exceeds its budget.
    """
    total = 0
    for i in range(len(token_counts) - 1, -1, -1):
        total += token_counts[i]
        if total > budget:
            return i + 1
    return 0


def window_series(token_counts: Sequence[int], budget: int) -> list[int]:
    """Tokens a sliding window of `budget` holds after each turn of the conversation."""
    out = []
    for n in range(1, len(token_counts) + 1):
        counts = token_counts[:n]
        out.append(sum(counts[window_start(counts, budget) :]))
    return out


def mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return sum(vals) / len(vals) if vals else None


#: Buckets of "turns added after the page's last turn" for fidelity against age.
AGE_EDGES: tuple[int, ...] = (0, 10, 25, 50, 100, 200, 400)


def age_bucket(turns_since: int, edges: Sequence[int] = AGE_EDGES) -> str:
    """The label of the age bucket holding `turns_since`, e.g. ``"10-24"`` or ``"400+"``."""
    if turns_since < edges[0]:
        raise ValueError("age must be ≥ 0")
    for lo, hi in pairwise(edges):
        if lo <= turns_since < hi:
            return f"{lo}-{hi - 1}"
    return f"{edges[-1]}+"


# ---------------------------------------------------------------------------------------------
# The DeepSeek-OCR paper's Fox results (Table 2: 100 English pages, text tokens per page
# 600–1300), drawn beside our own points and always labelled as the paper's.


@dataclass(frozen=True)
class PaperPoint:
    mode: str
    precision: float
    compression: float
    text_tokens: str


PAPER_FOX: tuple[PaperPoint, ...] = (
    PaperPoint("tiny", 0.965, 10.5, "600-700"),
    PaperPoint("tiny", 0.838, 13.2, "800-900"),
    PaperPoint("tiny", 0.793, 16.5, "1000-1100"),
    PaperPoint("tiny", 0.591, 19.7, "1200-1300"),
    PaperPoint("small", 0.985, 6.7, "600-700"),
    PaperPoint("small", 0.968, 8.5, "800-900"),
    PaperPoint("small", 0.915, 10.6, "1000-1100"),
    PaperPoint("small", 0.871, 12.6, "1200-1300"),
)
PAPER_SOURCE = "DeepSeek-OCR paper (arXiv 2510.18234), Table 2, Fox benchmark, decoder DeepSeek-OCR"

__all__ = [
    "ANSWER_THRESHOLD",
    "PAPER_FOX",
    "age_bucket",
    "answer_exact",
    "answer_found",
    "answer_score",
    "answer_words",
    "compression",
    "fidelity",
    "normalise_answer",
    "savings",
    "share",
    "window_series",
    "window_start",
]
