"""Correcting misread lines: candidate readings, cheapest first, until one passes the line's check.

Small type loses words in a few typical ways: glued ("startingmy"), a letter misread
("plece", "Oina"), punctuation read as a letter ("Thanks!" as "thankst", "[shares" as
"Eshares"), an apostrophe lost ("Tm" for "I'm"), the speaker label garbled ("(userl"), a
glyph of DejaVu Sans taken for another ("|" for "I", "s" or "=" for "a": `GLYPHS`), a
one-letter word lost ("means lot"). Each word of a misread line gets its variants: itself,
the other engine's reading of the same stretch, the spelling dictionary's near words
(`optimem.aids.speller`, over symspellpy's bundled English frequency dictionary), the page's rare
words within two edits (`optimem.aids.lexicon`), glyph confusions, and splits into known words;
a line that reads shorter than the layout says may also get a lost "a" or "I" after any
word. Combinations are tried best first, and
the first whose words match the line's check (`optimem.aids.linecheck`) is the line, exactly. When
none does within the search limit, the cheapest combination is kept: on prose it is much
closer than the raw reading, because every word the page holds is known to the dictionary or
the lexicon, so an unknown word is a misread.
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cache

from rapidfuzz.distance import Levenshtein

from ..aids.lexicon import dictionary_words
from ..aids.linecheck import WORD, digest_joined, digest_words, fold, line_words
from ..aids.speller import speller

#: Combinations tried per misread line before the cheapest is kept unverified.
SEARCH_LIMIT = 300
#: Readings that each lead a search of their own (the rest only lend their words): all six
#: a re-read line can have (the first; the second line model's on an aged page; each other
#: engine's, as read and merged with the first's word gaps). Three left the last engine's
#: reading out, and a hash only it read right was never tried as it stood.
LEADS = 6
#: The search sums variant costs in these units, exactly (every cost is a multiple of 0.01).
COST_UNIT = 0.0001
#: How far past `SEARCH_LIMIT` the search may go to finish the choices tied with the last one.
TIE_LIMIT = 2
#: The kinds of variant a word may get (each can be left out, to measure what it adds).
STEPS = frozenset(
    {"label", "other", "dictionary", "lexicon", "apostrophes", "punctuation", "splits", "glyphs", "dropped"}
)
#: One-letter words small type loses altogether ("means lot" for "means a lot", "went" for
#: "I went"): tried after any word of a line that reads shorter than the layout says it is.
DROPPED = ("a", "I")
#: Short readings that small sans-serif type turns a word into, and what they stood for: in
#: DejaVu Sans a capital I is a bare stroke ("|", "l"), and at 8 px "a" closes into "=" or "8"
#: and "It's" loses its I ("t's", "k's"). Only variants: the line's check decides.
GLYPHS: dict[str, tuple[str, ...]] = {
    "|": ("I",),
    "l": ("I",),
    "1": ("I",),
    "!": ("I",),
    "=": ("a", "it"),
    "=»": ("a",),
    "»": ("a",),
    "8": ("a",),
    "t": ("it", "I"),
    "k": ("it",),
    "s": ("a",),
    "5": ("a",),
    "2": ("a",),
    "lt": ("it",),
    "tt": ("it",),
    "ic": ("is",),
    "ls": ("is",),
    "lf": ("if",),
    "ln": ("in",),
}
#: Stray readings that almost always stand for what GLYPHS says, so the fix is tried first
#: (digits and "1" may be meant: they keep their reading first).
MOSTLY_GLYPHS = frozenset({"|", "=", "»", "=»", "!", "s", "l", "t", "k", "tt", "lt"})
#: A reading's tokens: its words, and the stray marks GLYPHS knows standing alone.
TOKEN = re.compile(r"\w+|(?<!\S)(?:=»|[|=»!])(?!\S)")
_CONTRACTION_TAILS = frozenset({"ll", "re", "ve"})


@dataclass(frozen=True)
class Variant:
    """One way to read a word: the words the check sees, how it is written, and its cost."""

    words: tuple[str, ...]
    surface: str
    cost: float
    keep_case: bool = False
    """The surface is written as is (a lexicon word), not cased like the word it replaces."""


@dataclass(frozen=True)
class LineFix:
    """A line's reading after correction; `verified` when its words match the line's check."""

    text: str
    verified: bool
    tried: int = 0


class Corrector:
    """Corrects the lines of one page, knowing its rare words. Not shared between pages."""

    def __init__(
        self, lexicon: Collection[str] = (), *, limit: int = SEARCH_LIMIT, steps: Collection[str] = STEPS
    ) -> None:
        unknown = set(steps) - STEPS
        if unknown:
            raise ValueError(f"unknown correction steps {sorted(unknown)}; choose from {sorted(STEPS)}")
        self.steps = frozenset(steps)
        self.lexicon = {fold(w): w for w in lexicon} if "lexicon" in self.steps else {}
        self.limit = limit
        self._variants: dict[tuple[str, tuple[tuple[str, ...], ...], bool], list[Variant]] = {}

    def known(self, word: str) -> bool:
        """A word some page may hold: the dictionary's, the page's rare words, a number, or a
        piece of a contraction ("it's" is the words "it" and "s")."""
        return (
            word.isdigit()
            or len(word) == 1
            or word in _CONTRACTION_TAILS
            or word in self.lexicon
            or word in dictionary_words()
        )

    def correct(
        self,
        readings: Sequence[str],
        check: bytes,
        *,
        label: str | None = None,
        prose: bool = True,
        length: int | None = None,
    ) -> LineFix:
        """The first of `readings` (best first) or of their corrections that passes `check`.

        `label` is the speaker label typeset at the start of the line, when the line starts a
        turn (the memory knows it without OCR); `prose` allows word-level corrections (code
        and CJK lines are only checked, never respelled); `length` is how many characters the
        layout says the line holds (label included): a reading two or more shorter may have
        lost a one-letter word.
        """
        readings = [r for r in readings if r]
        if not readings:
            return LineFix("", False)
        if label and "label" in self.steps:  # the label is known: put it in place of what was read
            readings = list(dict.fromkeys(with_label(r, label) for r in readings))
        for reading in readings:
            if digest_words(line_words(reading)) == check:
                return LineFix(reading, True)
        if not prose:
            return LineFix(readings[0], False)
        best: LineFix | None = None
        tried = 0
        # each reading leads once (a word one engine dropped is only in the other's reading);
        # then, where it reads short, once more with lost words: a wider search, tried last so
        # that it never crowds out the plain one
        leads = [(k, False) for k in range(len(readings[:LEADS]))]
        if length is not None and "dropped" in self.steps:
            leads += [
                (k, True) for k in range(len(readings[:LEADS])) if len(readings[k].strip()) <= length - 2
            ]
        for k, short in leads:
            primary = readings[k]
            fix = self._search_from(primary, readings[:k] + readings[k + 1 :], check, label, short)
            tried += fix.tried
            if fix.verified:
                return LineFix(fix.text, True, tried)
            best = best or fix
        assert best is not None
        return LineFix(best.text, False, tried)

    def _search_from(
        self, primary: str, others: Sequence[str], check: bytes, label: str | None, short: bool = False
    ) -> LineFix:
        """Combinations of `primary`'s word variants, cheapest first, until one passes `check`;
        with `short`, each word may also be followed by a lost one-letter word."""
        tokens = list((TOKEN if "glyphs" in self.steps else WORD).finditer(primary))
        alts = self._aligned(primary, tokens, others if "other" in self.steps else [])
        fixed = len(line_words(label)) if label and "label" in self.steps and primary.startswith(label) else 0
        options = [
            [Variant(_words_of(t.group()), t.group(), 0.0)]
            if i < fixed
            else self._options(t.group(), alts[i], primary[t.start() - 1 : t.start()] in "'’")
            for i, t in enumerate(tokens)
        ]
        if short:
            options = [_with_dropped(o) if i >= max(fixed, 1) - 1 else o for i, o in enumerate(options)]
        found, tried = _search(options, check, self.limit)
        chosen = [o[i] for o, i in zip(options, found, strict=True)] if found else [o[0] for o in options]
        return LineFix(_write(primary, tokens, chosen), found is not None, tried)

    # -- candidates ------------------------------------------------------------------------

    def _aligned(
        self, primary: str, tokens: list[re.Match[str]], others: Sequence[str]
    ) -> list[list[tuple[str, ...]]]:
        """Per word of `primary`, what the other readings read in its place (word-aligned)."""
        mine = [fold(t.group()) for t in tokens]  # a stray mark aligns as itself
        alts: list[list[tuple[str, ...]]] = [[] for _ in tokens]
        for other in others:
            theirs = line_words(other)
            matcher = difflib.SequenceMatcher(None, mine, theirs, autojunk=False)
            for op, i1, i2, j1, j2 in matcher.get_opcodes():
                if op != "replace":
                    continue
                if i2 - i1 == 1 and j2 - j1 <= 3:
                    alts[i1].append(tuple(theirs[j1:j2]))
                elif i2 - i1 == j2 - j1:
                    for k in range(i2 - i1):
                        alts[i1 + k].append((theirs[j1 + k],))
        return alts

    def _options(self, word: str, alts: list[tuple[str, ...]], tail: bool = False) -> list[Variant]:
        key = (word, tuple(alts), tail)
        if key not in self._variants:
            self._variants[key] = self._build_options(word, alts, tail)
        return self._variants[key]

    def _build_options(self, token: str, alts: list[tuple[str, ...]], tail: bool = False) -> list[Variant]:
        """A token's variants, cheapest first; `tail`: it follows an apostrophe ("it's")."""
        out: dict[tuple[str, ...], Variant] = {}

        def add(words: tuple[str, ...], surface: str, cost: float, keep_case: bool = False) -> None:
            if words not in out or out[words].cost > cost:
                out[words] = Variant(words, surface, max(cost, 0.01), keep_case)

        glyphs = "glyphs" in self.steps and not tail
        likely = glyphs and token in MOSTLY_GLYPHS
        if glyphs:
            for k, meant in enumerate(GLYPHS.get(token, ())):
                add(tuple(line_words(meant)), meant, (0.05 if likely else 0.3) + 0.1 * k)
        if not WORD.fullmatch(token):  # a stray mark: kept as it is (no word) or read as GLYPHS says
            add((), token, 0.25 if likely else 0.0, keep_case=True)
            return sorted(out.values(), key=lambda v: v.cost)
        word = fold(token)
        if likely:
            add((word,), token, 0.25)

        known = self.known(word)
        disputed = any(alt != (word,) for alt in alts)  # another engine read something else
        agreed = set(alts)
        add((word,), word, 0.0 if known else 1.5)
        for alt in alts:
            if alt != (word,):
                add(alt, " ".join(alt), 0.6 + 0.3 * (not all(map(self.known, alt))))
        if word == "l" and "glyphs" not in self.steps:  # "I" read as "l"
            add(("i",), "I", 0.2)
        steps = self.steps
        if len(word) > 1 and not word.isdigit():
            # a known word is rarely a misread: respell it only where another reading disagrees
            if (not known or disputed) and "dictionary" in steps:
                penalty = 0.8 if known else 0.0
                for rank, s in enumerate(speller().near(word, limit=8)):
                    if s.distance:
                        ws = tuple(line_words(s.term))
                        add(ws, s.term, 0.6 * s.distance + 0.05 * rank + penalty - 0.4 * (ws in agreed))
            if not known or disputed:
                penalty = 0.8 if known else 0.0
                for folded, written in self.lexicon.items():
                    d = Levenshtein.distance(word, folded, score_cutoff=2)
                    if 0 < d <= 2:
                        cost = 0.5 * d + penalty - 0.4 * ((folded,) in agreed)
                        add((folded,), written, cost, keep_case=True)
            # a lost apostrophe: "Tm" → "I'm", "ve" → "I've", "its" → "it's"
            for stripped, contraction in _contractions().items() if "apostrophes" in steps else ():
                d = 0 if stripped == word else Levenshtein.distance(word, stripped, score_cutoff=1)
                if d <= 1 and abs(len(stripped) - len(word)) <= 1 and (d == 0 or not known or disputed):
                    add(tuple(line_words(contraction)), contraction, 0.3 + 0.3 * d + 0.2 * known)
            if glyphs and len(word) > 2:
                # a glued "a" read as "s" ("whats" for "what a", "hada" for "had a")
                if word[-1] in "sa" and self.known(word[:-1]) and len(word[:-1]) > 1:
                    add((word[:-1], "a"), f"{word[:-1]} a", 0.45 + 0.3 * known)
                # "a" read as "s" inside a word ("grest", "sbout")
                for k in (k for k, ch in enumerate(word) if ch == "s"):
                    fixed = word[:k] + "a" + word[k + 1 :]
                    if self.known(fixed):
                        add((fixed,), fixed, 0.25 + 0.5 * known)
            # punctuation read as a letter: "thanks!" → "thankst", "[shares" → "eshares"
            punctuation = "punctuation" in steps
            if punctuation and word[-1] in "tlsi" and self.known(word[:-1]):
                add((word[:-1],), word[:-1], 0.3 + 0.4 * known)
            if punctuation and word[0] in "elci" and self.known(word[1:]):
                add((word[1:],), word[1:], 0.4 + 0.4 * known)
            if not known and len(word) > 3 and "splits" in steps:
                parts = tuple(speller().segment(word))
                split = " ".join(parts)
                if len(parts) > 1:
                    add(parts, split, 0.7)
                for i in range(1, len(word)):
                    a, b = word[:i], word[i:]
                    if self.known(a) and self.known(b):
                        add((a, b), f"{a} {b}", 0.5 + 0.3 * (len(a) == 1 and a not in "ai"))
            if not known:
                add((), "", 2.0)
        return sorted(out.values(), key=lambda v: v.cost)


def _with_dropped(options: list[Variant]) -> list[Variant]:
    """A word's variants, and its three cheapest each followed by a lost one-letter word."""
    more = [
        Variant(
            (*v.words, fold(w)), f"{v.surface} {w}" if v.surface else w, v.cost + 0.5 + 0.1 * k, v.keep_case
        )
        for v in options[:3]
        for k, w in enumerate(DROPPED)
    ]
    return sorted(options + more, key=lambda v: v.cost)


def _words_of(token: str) -> tuple[str, ...]:
    return tuple(line_words(token))


@cache
def _contractions() -> dict[str, str]:
    """The dictionary's contractions by their spelling without the apostrophe ("im" → "i'm")."""
    found = {w.replace("'", ""): w for w in dictionary_words() if "'" in w and len(w) <= 8}
    return {k: v for k, v in found.items() if len(k) >= 2}


def with_label(reading: str, label: str) -> str:
    """`reading` with the stretch that best matches the known speaker label replaced by it."""
    n = len(label)
    # around the label's length; a reading shorter than that (a long name, a short turn) is
    # tried at every length it has
    ends = range(max(0, min(n - 4, len(reading))), min(len(reading), n + 4) + 1)
    end = min(ends, key=lambda k: (Levenshtein.normalized_distance(reading[:k].rstrip(), label), abs(k - n)))
    rest = reading[end:].lstrip()
    return f"{label} {rest}" if rest else label


def _search(options: list[list[Variant]], check: bytes, limit: int) -> tuple[tuple[int, ...] | None, int]:
    """Choices (one index per word) in order of total cost, until one's words pass `check`;
    returns the passing choice (or None) and how many were tried.

    Only words with more than one variant vary, and each choice is reached from one parent
    only (the choice with its last raised index lowered), so no set of seen choices is kept.
    Costs are summed in whole `COST_UNIT`s: choices of equal cost are tried in index order,
    never in an order that float rounding along different paths would pick, and past `limit`
    the search finishes the choices that cost as much as the last one tried (up to
    `TIE_LIMIT` times `limit`): the choices tried are the cheapest, whatever the order of ties.
    """
    joined = [[" ".join(v.words) for v in o] for o in options]
    varying = [k for k, o in enumerate(options) if len(o) > 1]
    # per varying word, each variant written after the fixed words before it
    pieces, prev = [], 0
    for k in varying:
        before = " ".join(w for w in (j[0] for j in joined[prev:k]) if w)
        pieces.append([" ".join(p for p in (before, w) if p) for w in joined[k]])
        prev = k + 1
    tail = " ".join(w for w in (j[0] for j in joined[prev:]) if w)
    costs = [[round(v.cost / COST_UNIT) for v in options[k]] for k in varying]
    heap = [(sum(round(o[0].cost / COST_UNIT) for o in options), (0,) * len(varying), 0)]
    tried, cost = 0, None
    # the limit never cuts a tie: what costs as much as the last choice tried is tried too, so
    # which choices are tried depends on their costs alone, never on how ties are ordered
    while heap and (tried < limit or (heap[0][0] == cost and tried < TIE_LIMIT * limit)):
        cost, idx, last = heapq.heappop(heap)
        tried += 1
        parts = [p for p in map(list.__getitem__, pieces, idx) if p]
        if tail:
            parts.append(tail)
        if digest_joined(" ".join(parts)) == check:
            choice = [0] * len(options)
            for k, i in zip(varying, idx, strict=True):
                choice[k] = i
            return tuple(choice), tried
        for j in range(last, len(varying)):
            i = idx[j] + 1
            if i < len(costs[j]):
                step = costs[j][i] - costs[j][i - 1]
                heapq.heappush(heap, (cost + step, (*idx[:j], i, *idx[j + 1 :]), j))
    return None, tried


def _write(primary: str, tokens: list[re.Match[str]], chosen: list[Variant]) -> str:
    """`primary` with its words replaced by the chosen variants, punctuation kept."""
    out, pos = [], 0
    for token, variant in zip(tokens, chosen, strict=True):
        out.append(primary[pos : token.start()])
        out.append(_cased(token.group(), variant))
        pos = token.end()
    out.append(primary[pos:])
    return re.sub(r" {2,}", " ", "".join(out)).strip()


def _cased(original: str, variant: Variant) -> str:
    """The variant written with the case of the word it replaces."""
    s = variant.surface
    if variant.keep_case or not s:
        return s
    if s == "i" or s.startswith("i'"):
        return "I" + s[1:]
    if original.isupper() and len(original) > 1 and len(s) > 1:
        return s.upper()
    if original[:1].isupper():
        return s[:1].upper() + s[1:]
    return s
