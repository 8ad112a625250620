"""The verbatim side channel: identifiers, numbers and URLs kept exact beside each page.

OCR reads prose well and random strings "plausibly", so a memory people trust keeps the
strings that must be exact as text, and puts them back into recalled text where the OCR
came close.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

# Order matters: earlier kinds claim their characters first.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`)\]]+[^\s<>\"'`)\].,;:!?]")),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    (
        "uuid",
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ),
    ("code", re.compile(r"`([^`\n]{2,80})`")),
    ("hex", re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b")),
    (
        "identifier",
        re.compile(
            r"\b(?:[A-Za-z][A-Za-z0-9]*(?:[._/:-][A-Za-z0-9]+)+"  # db-replica-03.eu-west, OPS-4821
            r"|[a-z]+(?:_[a-z0-9]+)+"  # snake_case
            r"|[a-z]+(?:[A-Z][a-z0-9]*)+"  # camelCase
            r"|[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+"  # PascalCase
            r"|(?=[A-Za-z]*\d)[A-Za-z0-9]{3,}(?<![0-9]))\b"  # v2, ab12cd
        ),
    ),
    ("number", re.compile(r"(?<![\w.])[-+]?[$€£¥]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:%|[kKmMbB]\b)?")),
)


@dataclass(frozen=True)
class VerbatimItem:
    """One exact string and where it came from."""

    kind: str
    value: str
    turn_id: int
    offset: int


def extract(text: str, turn_id: int = 0) -> list[VerbatimItem]:
    """Exact strings in `text` worth keeping verbatim, in order of appearance."""
    taken = [False] * len(text)
    items: list[VerbatimItem] = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            group = 1 if kind == "code" else 0
            start, end = m.span(group)
            value = m.group(group)
            if kind == "number" and len(value.strip("+-$€£¥,.%")) < 2:
                continue  # single digits are prose, not data
            if any(taken[start:end]):
                continue
            taken[start:end] = [True] * (end - start)
            items.append(VerbatimItem(kind, value, turn_id, start))
    items.sort(key=lambda it: it.offset)
    return items


def repair(text: str, items: list[VerbatimItem], min_similarity: float = 0.75) -> str:
    """Replace near-misses of each verbatim string in OCR output with the exact string.

    A window of the OCR text of about the item's length that matches it closely enough
    (normalised Levenshtein similarity ≥ min_similarity) is taken to be a misread copy.
    """
    out = text
    values = {it.value for it in items}
    for item in sorted(values, key=len, reverse=True):
        if item in out or len(item) < 3:
            continue
        best = _best_window(out, item)
        if best is None:
            continue
        start, end, score = best
        # a short string one character off is as likely a different name ("c.oid", "n.oid")
        needed = max(min_similarity, 0.85) if len(item) < 8 else min_similarity
        window = out[start:end]
        misread_punctuation = len(window) == len(item) and _digits(window) == _digits(item) != ""
        if (score >= needed or misread_punctuation) and window not in values:  # never overwrite a sibling
            out = out[:start] + item + out[end:]
    return out


def _best_window(text: str, needle: str, slack: int = 3) -> tuple[int, int, float] | None:
    """(start, end, similarity) of the stretch of `text` most like `needle`.

    Starts from rapidfuzz's best partial alignment and tries moving each edge by up to
    `slack` characters, so a misread last character ("OPS-482l") is replaced with the rest,
    while glued neighbours (OCR often drops spaces in code) are left alone.
    """
    alignment = fuzz.partial_ratio_alignment(needle, text, score_cutoff=60)
    if alignment is None:
        return None
    best: tuple[int, int, float] | None = None
    for ds in range(-slack, slack + 1):
        for de in range(-slack, slack + 1):
            start, end = alignment.dest_start + ds, alignment.dest_end + de
            if start < 0 or end > len(text) or end <= start:
                continue
            window = text[start:end]
            if window != window.strip():
                continue
            score = Levenshtein.normalized_similarity(window, needle)
            if best is None or (score, end - start) > (best[2], best[1] - best[0]):
                best = (start, end, score)
    return best


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def exact_share(recalled: str, items: list[VerbatimItem]) -> float:
    """Share of verbatim strings found exactly in the recalled text (1.0 when there are none)."""
    if not items:
        return 1.0
    return sum(it.value in recalled for it in items) / len(items)
