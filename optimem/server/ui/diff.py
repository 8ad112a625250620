"""Word-level differences for the page view: recalled text against its source, repairs against raw OCR."""

from __future__ import annotations

import re
from typing import Literal

from rapidfuzz.distance import Levenshtein

from optimem.reading.fidelity import fidelity

Op = Literal["same", "missed", "misread", "extra"]

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Words, runs of whitespace and single punctuation marks; joined they give `text` back."""
    return _TOKEN.findall(text)


def source_diff(recalled: str, source: str) -> list[dict[str, str]]:
    """The source as segments: `same`, `missed` (not in the recall), `misread` (with what was
    read instead) and `extra` (read, but not on the page). Whitespace is compared loosely, as
    fidelity is measured: a line break read as a space is no difference."""
    out: list[dict[str, str]] = []
    for op, text, read in _walk(recalled, source):
        if op == "equal":
            _push(out, "same", text)
        elif op == "insert":
            _push(out, "missed", text)
        elif op == "delete":
            _push(out, "extra", read)
        else:
            out.append({"op": "misread", "text": text, "read": read})
    return out


def repairs(raw: str, repaired: str) -> list[dict[str, str]]:
    """The recalled text as segments: `same`, or `repair` where the verbatim side channel
    replaced what OCR read (`read` holds the raw OCR)."""
    if raw == repaired:
        return [{"op": "same", "text": repaired}] if repaired else []
    out: list[dict[str, str]] = []
    for op, text, read in _walk(raw, repaired):
        if op == "equal":
            _push(out, "same", text)
        elif text:
            out.append({"op": "repair", "text": text, "read": read})
    return out


def _walk(a_text: str, b_text: str) -> list[tuple[str, str, str]]:
    """(operation, text of `b`, text of `a`) along `b`, words and marks aligned, the whitespace
    between them taken from `b` and counted as equal."""
    a, b = tokens(a_text), tokens(b_text)
    a_idx = [k for k, t in enumerate(a) if not t.isspace()]
    b_idx = [k for k, t in enumerate(b) if not t.isspace()]

    def span(toks: list[str], idx: list[int], i: int, j: int) -> str:
        return "".join(toks[idx[i] : idx[j - 1] + 1]) if j > i else ""

    out: list[tuple[str, str, str]] = []
    pos = 0
    for op, i1, i2, j1, j2 in _opcodes([a[k] for k in a_idx], [b[k] for k in b_idx]):
        if j2 > j1:
            gap = "".join(b[pos : b_idx[j1]])
            if gap:
                out.append(("equal", gap, gap))
            pos = b_idx[j2 - 1] + 1
        out.append((op, span(b, b_idx, j1, j2), span(a, a_idx, i1, i2)))
    tail = "".join(b[pos:])
    if tail:
        out.append(("equal", tail, tail))
    return out


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """Edit operations turning token list `a` into `b` (bit-parallel Levenshtein, linear-ish in practice)."""
    return [
        (op.tag, op.src_start, op.src_end, op.dest_start, op.dest_end) for op in Levenshtein.opcodes(a, b)
    ]


def _push(out: list[dict[str, str]], op: str, text: str) -> None:
    if not text:
        return
    if out and out[-1]["op"] == op and "read" not in out[-1]:
        out[-1]["text"] += text
    else:
        out.append({"op": op, "text": text})


def measured(recalled: str, raw: str, source: str | None) -> dict[str, float] | None:
    """Fidelity of the recalled and of the raw OCR text against the source (None without it)."""
    if source is None:
        return None
    return {"recalled": round(fidelity(recalled, source), 4), "raw": round(fidelity(raw, source), 4)}
