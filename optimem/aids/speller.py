"""Near words of an English word, from a symmetric-delete index that loads in milliseconds.

Correction asks, for each misread word, which dictionary words lie within two edits of it
(`near`) and how a glued run of words splits (`segment`). symspellpy answers both over its
bundled frequency dictionary, but builds its index in Python at every process start: 2–3 s on
an idle core, 17.6 s on a busy one (issue 17's profile), paid by the first page every process
reads. This module keeps the same dictionary and the same idea (symmetric deletes of a 7-letter
prefix, verified by the optimal-string-alignment distance, ranked by distance then frequency)
but stores the index as flat arrays in a cache folder, built once per machine (~3 s) and
memory-mapped after that, and splits words into known words by their frequencies alone.

The cache folder is optimem's (`optimem.cache`); an unwritable one falls back to building in
memory.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import zlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
from rapidfuzz.distance import OSA

from ..cache import cache_dir

log = logging.getLogger("optimem")

#: Edits a near word may be away; the index is built for this many.
MAX_DISTANCE = 2
#: Letters of a word the index keys on (symspell's prefix length).
PREFIX = 7
#: Bumped when the index format changes, so an old cache is rebuilt.
FORMAT = 1
#: Longest part `segment` tries.
MAX_PART = 24


def dictionary_path() -> str:
    """symspellpy's bundled English frequency dictionary (82,765 words with their counts)."""
    return str(resources.files("symspellpy").joinpath("frequency_dictionary_en_82_765.txt"))


def _deletes(word: str, distance: int = MAX_DISTANCE) -> set[str]:
    """`word` and every string made by deleting up to `distance` of its letters."""
    out = {word}
    frontier = {word}
    for _ in range(distance):
        frontier = {w[:i] + w[i + 1 :] for w in frontier if len(w) > 1 for i in range(len(w))}
        out |= frontier
    return out


def _key(s: str) -> int:
    return zlib.crc32(s.encode())


@dataclass(frozen=True)
class Near:
    """A dictionary word near the one asked about."""

    term: str
    distance: int
    count: int


class Speller:
    """The bundled English frequency dictionary, searchable by edit distance and split."""

    def __init__(self, words: list[str], counts: np.ndarray, keys: np.ndarray, ids: np.ndarray) -> None:
        self.words = words
        self.counts = counts
        self._keys = keys
        self._ids = ids
        self._index = {w: i for i, w in enumerate(words)}
        total = float(counts.sum())
        self._log_total = math.log(total)

    # -- building and loading ----------------------------------------------------------------

    @classmethod
    def build(cls, dictionary: str | os.PathLike[str]) -> Speller:
        """Read the dictionary ("word count" lines) and index its words' prefix deletes."""
        words: list[str] = []
        counts: list[int] = []
        with open(dictionary, encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 2:
                    words.append(parts[0])
                    counts.append(int(parts[1]))
        keys: list[int] = []
        ids: list[int] = []
        for i, word in enumerate(words):
            for d in _deletes(word[:PREFIX]):
                keys.append(_key(d))
                ids.append(i)
        key_arr = np.asarray(keys, dtype=np.uint32)
        order = np.argsort(key_arr, kind="stable")
        return cls(
            words, np.asarray(counts, dtype=np.int64), key_arr[order], np.asarray(ids, dtype=np.int32)[order]
        )

    def save(self, folder: Path) -> None:
        """Write the index as plain arrays (written to a temporary name, then renamed)."""
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{os.getpid()}-{threading.get_ident()}"
        tmp.mkdir()
        (tmp / "words.txt").write_text("\n".join(self.words), encoding="utf-8")
        np.save(tmp / "counts.npy", self.counts)
        np.save(tmp / "keys.npy", self._keys)
        np.save(tmp / "ids.npy", self._ids)
        try:
            tmp.rename(folder / "index")
        except OSError:  # another process finished first: keep its copy
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()

    @classmethod
    def load(cls, folder: Path) -> Speller:
        index = folder / "index"
        words = (index / "words.txt").read_text(encoding="utf-8").split("\n")
        return cls(
            words,
            np.load(index / "counts.npy"),
            np.load(index / "keys.npy", mmap_mode="r"),
            np.load(index / "ids.npy", mmap_mode="r"),
        )

    # -- asking ------------------------------------------------------------------------------

    def count(self, word: str) -> int:
        i = self._index.get(word)
        return 0 if i is None else int(self.counts[i])

    def near(self, word: str, max_distance: int = MAX_DISTANCE, limit: int | None = None) -> list[Near]:
        """Dictionary words within `max_distance` edits of `word` (lower case), nearest and
        most frequent first; the word itself (distance 0) when the dictionary knows it."""
        probes = np.fromiter((_key(d) for d in _deletes(word[:PREFIX], max_distance)), dtype=np.uint32)
        lo = np.searchsorted(self._keys, probes, "left")
        hi = np.searchsorted(self._keys, probes, "right")
        seen: set[int] = set()
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            if b > a:
                seen.update(self._ids[a:b].tolist())
        found = []
        n = len(word)
        for i in seen:
            term = self.words[i]
            if abs(len(term) - n) > max_distance:
                continue
            d = OSA.distance(word, term, score_cutoff=max_distance)
            if d <= max_distance:
                found.append(Near(term, d, int(self.counts[i])))
        found.sort(key=lambda s: (s.distance, -s.count, s.term))
        return found if limit is None else found[:limit]

    def segment(self, text: str) -> list[str]:
        """`text` (one glued run, lower case) split into known words, most probable split first;
        the run itself when no split into known words exists."""
        n = len(text)
        best: list[tuple[float, int]] = [(0.0, 0)] + [(-math.inf, 0)] * n
        for end in range(1, n + 1):
            for start in range(max(0, end - MAX_PART), end):
                if best[start][0] == -math.inf:
                    continue
                c = self.count(text[start:end])
                if c:
                    score = best[start][0] + math.log(c) - self._log_total
                    if score > best[end][0]:
                        best[end] = (score, start)
        if best[n][0] == -math.inf:
            return [text]
        parts = []
        end = n
        while end > 0:
            start = best[end][1]
            parts.append(text[start:end])
            end = start
        return parts[::-1]


_lock = threading.Lock()


@cache
def _speller_for(dictionary: str) -> Speller:
    folder = cache_dir() / f"speller-v{FORMAT}-{_digest(dictionary)}"
    try:
        return Speller.load(folder)
    except (OSError, ValueError):
        pass
    speller = Speller.build(dictionary)
    try:
        speller.save(folder)
        log.info("built the spelling index once for this machine: %s", folder)
    except OSError as exc:
        log.warning("could not keep the spelling index in %s (%s): built in memory", folder, exc)
    return Speller.load(folder) if (folder / "index").is_dir() else speller


def _digest(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_size:x}"


def speller() -> Speller:
    """The speller over symspellpy's bundled dictionary: built once per machine, then loaded."""
    with _lock:
        return _speller_for(dictionary_path())
