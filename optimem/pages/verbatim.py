"""The verbatim side channel: identifiers, numbers and URLs kept exact beside each page.

OCR reads prose well and random strings "plausibly", so a memory people trust keeps the
strings that must be exact as text, and puts them back into recalled text where the OCR
came close.
"""

from __future__ import annotations

import re

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from ..layout import VerbatimItem

# Order matters: earlier kinds claim their characters first.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("url", re.compile(r"\b(?:https?|ftp)://[^\s<>\"'`)\]]+[^\s<>\"'`)\].,;:!?]")),
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")),
    (
        "uuid",
        re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    ),
    ("code", re.compile(r"`([^`\n]{2,80})`")),
    ("hex", re.compile(r"(?<![\w-])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,64}\b")),
    # digit-first identifiers: 443/tcp, 2024-05-01, 02:00, 10.0.0.1, 1.2.3, 3rd-party (kept when
    # they hold a letter, a / : - separator or two dots; 3.14 and 1,250 stay numbers)
    ("identifier", re.compile(r"(?<![\w.,$€£¥-])\d\w*(?:[./:-]\w+)+")),
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
    # names and words with accented letters, with a capitalised neighbour: Zoë Brontë, Müller
    ("word", re.compile(r"\b(?:[A-Z][\w]*\s)?\w*[\u00c0-\u024f]\w*(?:\s[A-Z\u00c0-\u024f][\w]*)?\b")),
    ("number", re.compile(r"(?<![\w.])[-+]?[$€£¥]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:%|[kKmMbB]\b)?")),
)


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
            if value[0].isdigit() and kind == "identifier" and not _digit_first_ok(value):
                continue
            if any(taken[start:end]):
                continue
            taken[start:end] = [True] * (end - start)
            items.append(VerbatimItem(kind, value, turn_id, start))
    items.sort(key=lambda it: it.offset)
    return items


def repair(text: str, items: list[VerbatimItem], min_similarity: float = 0.75) -> str:
    """Replace near-misses of each verbatim string in OCR output with the exact string.

    The kept strings are walked in the order they were written. Each one already in the text
    as a whole token anchors its place; each missing one is looked for only between the
    anchors of its neighbours, in two passes. First, a stretch that reads the same once OCR's
    look-alike characters are folded together (``ZX-LOO0`` for ``ZX-1000``, ``K-2004`` for
    ``K-200A``). Then a stretch of about its length that is close enough: normalised
    Levenshtein similarity ≥ min_similarity (stricter for short strings), only punctuation
    differing, or, for strings of six or more, one folded character off. A stretch that is
    itself another kept string, or folds to one still missing, is never overwritten.
    """
    order = sorted((it for it in items if len(it.value) >= 3), key=lambda it: (it.turn_id, it.offset))
    values = {it.value for it in items}
    folded = {v: _fold(v) for v in values}
    out = text
    for near in (False, True):
        spans = _anchors(out, order)
        masked = _mask(out, values)
        for i, item in enumerate(order):
            if spans[i] is not None:
                continue
            lo = max((sp[1] for sp in spans[:i] if sp is not None), default=0)
            hi = min((sp[0] for sp in spans[i + 1 :] if sp is not None), default=len(out))
            if hi <= lo:
                continue
            missing = {folded[it.value] for it, sp in zip(order, spans, strict=True) if sp is None}
            missing.discard(folded[item.value])
            region = masked[lo:hi]
            best = _near(region, item.value, missing) if near else _lookalike(region, item.value)
            if best is None:
                continue
            start, end, score = best[0] + lo, best[1] + lo, best[2]
            window = out[start:end]
            if window in values or (near and not _misread(window, item.value, score, min_similarity)):
                continue  # never overwrite a sibling
            out = out[:start] + item.value + out[end:]
            masked = _mask(out, values)
            delta = len(item.value) - (end - start)
            spans[i] = (start, start + len(item.value))
            spans[i + 1 :] = [None if sp is None else (sp[0] + delta, sp[1] + delta) for sp in spans[i + 1 :]]
    return _repair_anywhere(out, order, values, min_similarity)


def _repair_anywhere(text: str, order: list[VerbatimItem], values: set[str], min_similarity: float) -> str:
    """Last pass: a string still nowhere in the text is put at its best-matching stretch anywhere
    (copies glued to neighbours or moved by a misread line break), when that stretch is close
    by similarity or differs only around the digits; never over another kept string."""
    out = text
    for value in sorted({it.value for it in order}, key=len, reverse=True):
        if value in out:
            continue
        masked = _mask(out, values)
        best = _best_window(masked, value)
        if best is None:
            continue
        start, end, score = best
        window = out[start:end]
        needed = max(min_similarity, 0.85) if len(value) < 8 else min_similarity
        same_digits = len(window) == len(value) and _digits(window) == _digits(value) != ""
        if window not in values and (score >= needed or same_digits or _fold(window) == _fold(value)):
            out = out[:start] + value + out[end:]
    return out


def _anchors(text: str, order: list[VerbatimItem]) -> list[tuple[int, int] | None]:
    """Where each kept string (in written order) stands in `text` as a whole token, or None.

    Matched left to right; a copy much further on than the source's spacing allows is taken
    to be a later mention, not this one.
    """
    spans: list[tuple[int, int] | None] = []
    cursor, prev = 0, None
    for item in order:
        hits = [i for i in _whole(text, item.value) if i >= cursor]
        span = None
        if hits:
            pos = hits[0]
            if prev is not None and prev.turn_id == item.turn_id:
                gap = item.offset - (prev.offset + len(prev.value))
                if pos - cursor > 2 * max(gap, 0) + 40:
                    pos = -1
            if pos >= 0:
                span = (pos, pos + len(item.value))
                cursor, prev = span[1], item
        spans.append(span)
    return spans


def _near(text: str, value: str, others: set[str]) -> tuple[int, int, float] | None:
    """The closest stretch to `value` that does not fold to another string still missing.

    A whole token one folded character off wins (for strings of six or more); otherwise the
    best-aligned stretch of about the same length.
    """
    if len(value) >= 6:
        target, found = _fold(value), None
        for m in _TOKEN.finditer(text):
            tok = m.group(0)
            if "\0" in tok or abs(len(tok) - len(value)) > 1 or _fold(tok) in others:
                continue
            if Levenshtein.distance(_fold(tok), target, score_cutoff=1) <= 1:
                score = Levenshtein.normalized_similarity(tok, value)
                if found is None or score > found[2]:
                    found = (m.start(), m.end(), score)
        if found is not None:
            return found
    best = _best_window(text, value)
    if best is not None and _fold(text[best[0] : best[1]]) in others:
        return None
    return best


_TOKEN = re.compile(r"[^\s.,;!?()\[\]\"']+(?:[.,][^\s.,;!?()\[\]\"']+)*")


def _misread(window: str, value: str, score: float, min_similarity: float) -> bool:
    """Whether `window` of OCR output is a misread copy of `value`."""
    # a short string one character off is as likely a different name ("c.oid", "n.oid")
    needed = max(min_similarity, 0.85) if len(value) < 8 else min_similarity
    if score >= needed:
        return True
    if len(window) == len(value) and _digits(window) == _digits(value) != "":
        return True  # only punctuation or letters around the digits differ
    folded_w, folded_v = _fold(window), _fold(value)
    if folded_w == folded_v:
        return True
    return (
        len(value) >= 6
        and abs(len(window) - len(value)) <= 1
        and Levenshtein.distance(folded_w, folded_v) <= 1
    )


#: Characters OCR engines confuse, folded onto one representative (compared case-folded).
_LOOKALIKE = str.maketrans(
    {
        "O": "0", "o": "0", "Q": "0", "D": "0", "I": "1", "l": "1", "L": "1", "|": "1", "!": "1",
        "i": "1", "j": "1", "Z": "2", "z": "2", "S": "5", "s": "5", "B": "8", "G": "6", "b": "6",
        "g": "9", "q": "9", "A": "4", "T": "7", "—": "-", "–": "-", "_": "-", ",": ".",
    }
)  # fmt: skip


def _fold(text: str) -> str:
    """`text` with look-alike characters folded together; same length as `text`."""
    mapped = text.translate(_LOOKALIKE)
    low = mapped.lower()
    return low if len(low) == len(mapped) else "".join(c.lower()[:1] or c for c in mapped)


def _lookalike(text: str, needle: str) -> tuple[int, int, float] | None:
    """The first whole-token stretch of `text` that reads as `needle` once look-alikes fold."""
    folded, target = _fold(text), _fold(needle)
    i = folded.find(target)
    while i >= 0:
        end = i + len(needle)
        window = text[i:end]
        if "\0" not in window and not (
            (i > 0 and _joins(text[i - 1], window[0])) or (end < len(text) and _joins(text[end], window[-1]))
        ):
            return i, end, Levenshtein.normalized_similarity(window, needle)
        i = folded.find(target, i + 1)
    return None


def _whole(text: str, value: str) -> list[int]:
    """Offsets where `value` stands in `text` as a whole token (not inside a longer word)."""
    out, i = [], text.find(value)
    while i >= 0:
        before = text[i - 1] if i > 0 else " "
        after = text[i + len(value)] if i + len(value) < len(text) else " "
        if not (_joins(before, value[0]) or _joins(after, value[-1])):
            out.append(i)
        i = text.find(value, i + 1)
    return out


def _joins(neighbour: str, edge: str) -> bool:
    """True when `neighbour` would continue the token whose edge character is `edge`."""
    return neighbour.isalnum() and edge.isalnum()


def _mask(text: str, values: set[str]) -> str:
    """`text` with every whole-token copy of a kept string blanked out (same length)."""
    masked = text
    for value in sorted(values, key=len, reverse=True):
        for i in _whole(masked, value):
            masked = masked[:i] + "\0" * len(value) + masked[i + len(value) :]
    return masked


def _best_window(text: str, needle: str, slack: int = 3) -> tuple[int, int, float] | None:
    """(start, end, similarity) of the stretch of `text` most like `needle`.

    Starts from rapidfuzz's best partial alignment and tries moving each edge by up to
    `slack` characters, so a misread last character ("OPS-482l") is replaced with the rest,
    while glued neighbours (OCR often drops spaces in code) are left alone.
    """
    alignment = fuzz.partial_ratio_alignment(needle, text, score_cutoff=50)
    if alignment is None:
        return None
    best: tuple[int, int, float] | None = None
    for ds in range(-slack, slack + 1):
        for de in range(-slack, slack + 1):
            start, end = alignment.dest_start + ds, alignment.dest_end + de
            if start < 0 or end > len(text) or end <= start:
                continue
            window = text[start:end]
            if window != window.strip() or "\0" in window:
                continue
            score = Levenshtein.normalized_similarity(window, needle)
            if best is None or (score, end - start) > (best[2], best[1] - best[0]):
                best = (start, end, score)
    return best


def _digit_first_ok(value: str) -> bool:
    """A digit-first string is an identifier if it holds a letter, a / : - or two dots."""
    return any(c.isalpha() for c in value) or any(c in "/:-" for c in value) or value.count(".") >= 2


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def exact_share(recalled: str, items: list[VerbatimItem]) -> float:
    """Share of verbatim strings found exactly in the recalled text (1.0 when there are none)."""
    if not items:
        return 1.0
    return sum(it.value in recalled for it in items) / len(items)
