"""The page's rare words (names, places, titles): kept beside the image to snap OCR near misses.

A spelling dictionary corrects "plece" to "piece" but knows neither "Banff" nor "Bareilles".
Each page keeps, among its reading aids, the words it holds that the dictionary does not know,
so that a misread "Bantt" can snap back to "Banff", and so that every word the page holds is
known to the corrector: a word it does not know is a misread. It is capped at `MAX_SHARE` of
the page's characters so the aids stay small.
"""

from __future__ import annotations

from functools import cache

from .linecheck import WORD, fold
from .speller import speller

#: The lexicon may take at most this share of the page's characters.
MAX_SHARE = 0.05


@cache
def dictionary_words() -> frozenset[str]:
    """Every word of the bundled dictionary (`optimem.aids.speller`'s words)."""
    return frozenset(speller().words)


def is_known(word: str) -> bool:
    """True for a word the dictionary knows, or a number (numbers have no spelling)."""
    w = fold(word)
    return w.isdigit() or w in dictionary_words()


def rare_words(text: str, *, max_chars: int | None = None) -> list[str]:
    """The distinct words of `text` the dictionary does not know, as written, first seen first.

    `max_chars` caps the lexicon's size (words and their separators); the first words seen
    are kept.
    """
    out: list[str] = []
    seen: set[str] = set()
    for word in WORD.findall(text):
        key = fold(word)
        if key in seen or is_known(word) or len(word) < 2:
            continue
        seen.add(key)
        out.append(word)
    return out if max_chars is None else capped(out, max_chars)


def capped(words: list[str], max_chars: int) -> list[str]:
    """The first of `words` that fit in `max_chars`, each with its separator."""
    out: list[str] = []
    used = 0
    for word in words:
        if used + len(word) + 1 > max_chars:
            break
        out.append(word)
        used += len(word) + 1
    return out
