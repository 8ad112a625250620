"""Score one replay: answers found, fidelity, identifiers, timing and what each model sees."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from ..modes import LADDER, Mode
from . import metrics as m
from .datasets import Question
from .replay import PageRead, Replay

Recalled = Callable[[str], str | None]


def recalled_text(rep: Replay) -> Recalled:
    """source turn id → the text the agent would get back for it (None: not decoded)."""
    s = rep.session
    unpaged = {t.id: t.content or "" for t in rep.unpaged()}
    pages_of: dict[int, list[int]] = defaultdict(list)
    for page in s.pages():
        for tid in page.turn_ids:
            pages_of[tid].append(page.id)

    def recalled(source_id: str) -> str | None:
        tid = rep.turn_ids[source_id]
        if tid in unpaged:
            return unpaged[tid]  # still in context as text
        parts = []
        for page_id in pages_of.get(tid, []):
            read = rep.reads.get(page_id)
            if read is None:
                return None
            parts.append(read.turn_text.get(tid, ""))
        return "\n".join(parts)

    return recalled


def survival(outcomes: Sequence[bool | None]) -> dict[str, Any]:
    """Questions measured, how many survived, their share, and how many could not be measured."""
    measured = [o for o in outcomes if o is not None]
    survived = sum(measured)
    return {
        "eligible": len(measured),
        "survived": survived,
        "share": r(m.share(survived, len(measured))),
        "not_measured": len(outcomes) - len(measured),
    }


def question_outcome(q: Question, recalled: Recalled) -> bool | None:
    """Whether the answer is found in the recalled text of its evidence (None: not decoded)."""
    texts = [recalled(e) for e in q.evidence]
    if any(t is None for t in texts):
        return None
    return m.answer_found(q.answer, "\n".join(t or "" for t in texts))


def fidelity(reads: Sequence[PageRead], decoder: str) -> dict[str, Any]:
    vals = [x.fidelity for x in reads]
    return {
        "mean": r(m.mean(vals)),
        "min": r(min(vals) if vals else None),
        "mean_with_verbatim": r(m.mean(x.fidelity_repaired for x in reads)),
        "pages": len(vals),
        "decoder": decoder,
    }


def identifiers(reads: Sequence[PageRead]) -> dict[str, Any]:
    total = sum(x.ids_total for x in reads)
    raw = sum(x.ids_exact_raw for x in reads)
    fixed = sum(x.ids_exact for x in reads)
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for x in reads:
        for kind, c in x.ids_by_kind.items():
            for i in range(3):
                kinds[kind][i] += c[i]
    return {
        "total": total,
        "exact_ocr": raw,
        "exact_with_verbatim": fixed,
        "share_ocr": r(m.share(raw, total)),
        "share_with_verbatim": r(m.share(fixed, total)),
        "by_kind": {
            k: {"total": c[0], "exact_ocr": c[1], "exact_with_verbatim": c[2]}
            for k, c in sorted(kinds.items())
        },
    }


def timing(rep: Replay, reads: Sequence[PageRead]) -> dict[str, Any]:
    """Seconds of compressing and of reading; pages given an earlier replay's read of the same
    image (`shared_from`) are counted apart and left out of the reading figures."""
    cs = rep.compress_seconds
    own = [x for x in reads if x.shared_from is None]
    dec = sum(x.decoder_seconds for x in own)
    chars = sum(x.page.chars for x in own)
    return {
        "compress_s_total": r(sum(cs)),
        "compress_s_mean": r(m.mean(cs)),
        "compress_s_max": r(max(cs) if cs else None),
        "recall_pages": len(own),
        "pages_shared": len(reads) - len(own),
        "recall_s_total": r(sum(x.wall_seconds for x in own)),
        "recall_s_per_page": r(m.mean(x.wall_seconds for x in own)),
        "decoder_s_total": r(dec),
        "decoder_chars_per_s": r(chars / dec if dec > 0 else None, 1),
    }


def seen(rep: Replay, consumers: Sequence[str], text_tokens: int) -> dict[str, Any]:
    """Tokens each consumer's model sees: recent text + every page (image and caption) at its rule."""
    out = {}
    for c in consumers:
        n = rep.session.stats(consumer=c).context_tokens
        out[c] = {"seen_tokens": n, "savings": r(m.savings(text_tokens, n))}
    return out


def page_row(read: PageRead) -> dict[str, Any]:
    p = read.page
    return {
        "page_id": p.id,
        "mode": p.mode.value,
        "creation_mode": p.creation_mode.value,
        "turns_since": read.turns_since,
        "age_bucket": m.age_bucket(read.turns_since),
        "turn_ids": list(p.turn_ids),
        "text_tokens": p.text_tokens,
        "positions": p.positions,  # what the backend's model sees, not always DeepSeek-OCR v1's
        "compression": r(m.compression(p.text_tokens, p.positions)),
        "chars": p.chars,
        "font_px": p.font_px,
        "canvas": p.canvas,
        "fidelity": r(read.fidelity),
        "fidelity_with_verbatim": r(read.fidelity_repaired),
        "identifiers": read.ids_total,
        "identifiers_exact_ocr": read.ids_exact_raw,
        "decoder_s": r(read.decoder_seconds),
        "recall_scope": read.scope,
        "shared_from": read.shared_from,
    }


def by_mode(reads: Sequence[PageRead], decoder: str) -> dict[str, Any]:
    """Pages, compression and fidelity per mode the pages are at now."""
    out: dict[str, Any] = {}
    for mode in LADDER:
        rs = [x for x in reads if x.page.mode is mode]
        if rs:
            tt = sum(x.page.text_tokens for x in rs)
            pos = sum(x.page.positions for x in rs)
            out[mode.value] = {
                "pages": len(rs),
                "text_tokens": tt,
                "positions": pos,
                "compression": r(m.compression(tt, pos)),
                "fidelity": fidelity(rs, decoder),
            }
    return out


def by_age(reads: Sequence[PageRead], decoder: str) -> list[dict[str, Any]]:
    """Fidelity per age bucket (turns added after the page), youngest first."""
    buckets: dict[str, list[PageRead]] = defaultdict(list)
    for x in sorted(reads, key=lambda x: x.turns_since):
        buckets[m.age_bucket(x.turns_since)].append(x)
    return [
        {
            "bucket": label,
            "pages": len(rs),
            "modes": sorted({x.page.mode.value for x in rs}, key=lambda v: Mode(v).rank),
            "fidelity": fidelity(rs, decoder),
        }
        for label, rs in buckets.items()
    ]


def cumsum(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


def r(value: float | None, digits: int = 4) -> float | None:
    """Round for JSON; None stays None and infinity becomes None."""
    if value is None or value == float("inf"):
        return None
    return round(float(value), digits)
