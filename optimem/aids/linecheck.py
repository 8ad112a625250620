"""Per-line word checks: a few bytes beside the page that tell a reader it read a line right.

OCR at 6–8 px gets a few words per line wrong, and nothing in its output says which lines.
The page therefore keeps, beside its image, a 3-byte digest of each line's words (NFKC,
case-folded, punctuation dropped: what an exact answer match compares). A reading whose
digest matches has every word of the line right; one that does not was misread somewhere,
and `optimem.reading.correction` tries candidate readings until one matches. Three bytes per line
of ~90 characters is ~3–4% of the page's text; a wrong candidate passes by chance once in
16.7 million tries.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence

DIGEST_BYTES = 3
#: A word, as the check, the lexicon and the corrector cut text into words.
WORD = re.compile(r"\w+")


def fold(word: str) -> str:
    """One word as the check compares it: NFKC, case-folded."""
    return unicodedata.normalize("NFKC", word).casefold()


def line_words(text: str) -> list[str]:
    """The words of a line as the check sees them (punctuation and spacing do not count)."""
    return [fold(w) for w in WORD.findall(text)]


def digest_words(words: Iterable[str]) -> bytes:
    """The check of a line given its words (already folded)."""
    return digest_joined(" ".join(words))


def digest_joined(joined: str) -> bytes:
    """The check of a line given its folded words already joined by single spaces."""
    return hashlib.blake2b(joined.encode(), digest_size=DIGEST_BYTES).digest()


def digest(text: str) -> bytes:
    """The check of a line of text."""
    return digest_words(line_words(text))


def pack(lines: Sequence[str]) -> bytes:
    """The checks of a page's lines, concatenated in line order (what the page keeps)."""
    return b"".join(digest(line) for line in lines)


def unpack(raw: bytes) -> list[bytes]:
    """The per-line checks `pack` wrote."""
    return [raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES)]


def verified(reading: str, check: bytes | None) -> bool:
    """True when `reading` has exactly the words the line was typeset with."""
    return check is not None and digest(reading) == check


def count_verified(lines: Sequence[str] | None, checks: Sequence[bytes]) -> int | None:
    """How many of a page's `lines` pass their checks; None when the page has no check for
    each line (nothing to count against)."""
    if lines is None or not checks or len(lines) != len(checks):
        return None
    return sum(verified(line, check) for line, check in zip(lines, checks, strict=True))
