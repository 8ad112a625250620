"""Word-level differences for the page view: recalled text against its source, repairs against raw OCR."""

from __future__ import annotations

import re
from typing import Literal

from rapidfuzz.distance import Levenshtein

from optimem.metrics import fidelity

Op = Literal["same", "missed", "misread", "extra"]

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Words, runs of whitespace and single punctuation marks; joined they give `text` back."""
    return _TOKEN.findall(text)


def source_diff(recalled: str, source: str) -> list[dict[str, str]]:
    """The source as segments: `same`, `missed` (not in the recall), `misread` (with what was
    read instead) and `extra` (read, but not on the page)."""
    a, b = tokens(recalled), tokens(source)
    out: list[dict[str, str]] = []
    for op, i1, i2, j1, j2 in _opcodes(a, b):
        read, src = "".join(a[i1:i2]), "".join(b[j1:j2])
        if op == "equal":
            _push(out, "same", src)
        elif op == "insert":
            _push(out, "missed", src)
        elif op == "delete":
            if read.strip():
                _push(out, "extra", read)
        else:
            out.append({"op": "misread", "text": src, "read": read})
    return out


def repairs(raw: str, repaired: str) -> list[dict[str, str]]:
    """The recalled text as segments: `same`, or `repair` where the verbatim side channel
    replaced what OCR read (`read` holds the raw OCR)."""
    if raw == repaired:
        return [{"op": "same", "text": repaired}] if repaired else []
    a, b = tokens(raw), tokens(repaired)
    out: list[dict[str, str]] = []
    for op, i1, i2, j1, j2 in _opcodes(a, b):
        new = "".join(b[j1:j2])
        if op == "equal":
            _push(out, "same", new)
        elif new:
            out.append({"op": "repair", "text": new, "read": "".join(a[i1:i2])})
    return out


def _opcodes(a: list[str], b: list[str]) -> list[tuple[str, int, int, int, int]]:
    """Edit operations turning token list `a` into `b` (bit-parallel Levenshtein, linear-ish in practice)."""
    return [
        (op.tag, op.src_start, op.src_end, op.dest_start, op.dest_end) for op in Levenshtein.opcodes(a, b)
    ]


def _push(out: list[dict[str, str]], op: str, text: str) -> None:
    if out and out[-1]["op"] == op and "read" not in out[-1]:
        out[-1]["text"] += text
    else:
        out.append({"op": op, "text": text})


def measured(recalled: str, raw: str, source: str | None) -> dict[str, float] | None:
    """Fidelity of the recalled and of the raw OCR text against the source (None without it)."""
    if source is None:
        return None
    return {"recalled": round(fidelity(recalled, source), 4), "raw": round(fidelity(raw, source), 4)}
