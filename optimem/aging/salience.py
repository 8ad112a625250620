"""Score how much of a page is names, numbers and identifiers: what a salient policy blurs last.

A page's salience is the share of its characters in side-channel strings (identifiers,
numbers, URLs, code spans: the `verbatim` rows, reading aids excluded) plus capitalised names
inside sentences ("Banff", "Sara Bareilles"). It is computed from what the store already
holds, so it needs no schema of its own and works after the archive is dropped (from the
side channel alone, or the decoded text when there is one).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..layout import VerbatimItem

# A capitalised word (Banff, McDonald, O'Neil, Jean-Luc), optionally followed by more of them.
_NAME = re.compile(r"\b[A-Z][a-z]+(?:['’-]?[A-Z][a-z]+)*(?:\s+[A-Z][a-z]+(?:['’-]?[A-Z][a-z]+)*)*\b")
# What comes right before a sentence's first word: its capital says nothing about names.
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\"“(\n]\s*|[-*•]\s+)$")
#: Capitalised words that are not names wherever they stand (greetings, interjections).
_NOT_NAMES = frozenset(
    {"Im", "Ive", "Ill", "Id", "Okay", "Oh", "Hey", "Hi", "Hello", "Yes", "No", "Yeah"}
) | {"Thanks", "Thank", "Wow", "Sure", "Cool", "Great", "Awesome", "Nice", "Congrats", "Haha", "Lol"}


def name_chars(text: str, skip: Sequence[tuple[int, int]] = ()) -> int:
    """Characters of `text` in capitalised names that do not open a sentence, outside `skip`
    (character ranges already counted, e.g. side-channel strings)."""
    taken = sorted(skip)
    count = 0
    for m in _NAME.finditer(text):
        words = m.group(0).split()
        start = m.start()
        if _SENTENCE_START.search(text[max(0, start - 3) : start]) or start == 0:
            # a sentence opener: only the words after the first can be names
            if len(words) == 1:
                continue
            start += len(words[0])
            while text[start].isspace():
                start += 1
            words = words[1:]
        if all(w in _NOT_NAMES for w in words):
            continue
        end = m.end()
        if any(a < end and start < b for a, b in taken):
            continue
        count += sum(len(w) for w in words if w not in _NOT_NAMES)
    return count


def salience(text: str | None, items: Sequence[VerbatimItem], chars: int) -> float:
    """Share (0–1) of a page's `chars` characters that are side-channel strings or names.

    `text` is the page's source text (or its decoded text where the archive is gone; None
    when neither is known: the side channel alone counts); `items` its verbatim rows, whose
    offsets need not refer to `text` (names inside them are found by value and not counted
    twice).
    """
    if chars <= 0:
        return 0.0
    strings = [v.value for v in items]
    kept = sum(len(s) for s in strings)
    names = 0
    if text:
        spans = []
        for value in set(strings):
            spans += [(m.start(), m.end()) for m in re.finditer(re.escape(value), text)]
        names = name_chars(text, spans)
    return min(1.0, (kept + names) / chars)
