"""Replay chats through optical memory and its baselines; return the results as plain data.

For each chat the runner replays every turn through a session (add the turn, then
`compress()`, as an agent would) under the default budget policy, and once more per fixed
mode (pages typeset at that mode and never aged). At the end it reads pages back once each
with the chosen decoder and scores them. The baselines (full history, a sliding window of
the same budget, recall from the text archive) come from the same replay. The result is
one JSON-ready dict whose schema `optimem.bench.report.SCHEMA` pins.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .. import __version__
from ..backends import DEFAULT_BACKEND, Backend, get_backend
from ..errors import InputError
from ..layout import restore_placeholders
from ..memory import DEFAULT_CREATION_MODE, OpticalMemory, Session
from ..modes import LADDER, BudgetPolicy, Mode, NoAging
from ..store import PageRecord
from ..tokens import DEFAULT_ENCODING, count_tokens
from . import metrics as m
from .datasets import Chat

SCHEMA_ID = "optimem.bench/1"
TEST_DOUBLE_WARNING = (
    "TEST DOUBLE: the 'test-double' backend reads the page layout, not pixels. Its fidelity, "
    "survival and speed figures are NOT measurements; use them only to check plumbing."
)


@dataclass(frozen=True)
class BenchConfig:
    """What to run. Defaults are those of `optimem bench`."""

    backend: str | Backend = DEFAULT_BACKEND
    budget_tokens: int = 4000
    """Token budget of the default policy (BudgetPolicy) and of the sliding window."""
    modes: tuple[Mode, ...] = LADDER
    """Fixed modes to replay (pages typeset at that mode, never aged)."""
    pages_per_mode: int = 3
    """Pages decoded per fixed-mode run, evenly spread; 0 decodes every page."""
    limit_turns: int | None = None
    keep_recent_turns: int = 6
    creation_mode: Mode = DEFAULT_CREATION_MODE
    """Mode the budget run typesets pages at (they age down from there)."""
    extra_encoding: str | None = "cl100k_base"
    consumers: tuple[str, ...] = tuple(m.CONSUMERS)
    allow_test_double: bool = False
    progress: bool = True
    workdir: Path | None = None
    """Keep the replay databases here (default: a temporary folder, removed after)."""

    def __post_init__(self) -> None:
        if self.budget_tokens <= 0:
            raise InputError(f"budget must be a positive token count, got {self.budget_tokens}")
        if self.pages_per_mode < 0:
            raise InputError("pages per mode must be ≥ 0 (0 decodes every page)")
        unknown = [c for c in self.consumers if c not in m.CONSUMERS]
        if unknown:
            raise InputError(f"unknown consumer {unknown[0]!r}; choose from {', '.join(m.CONSUMERS)}")


def is_test_double(backend: Backend) -> bool:
    return not backend.capabilities.reads_pixels


# ---------------------------------------------------------------------------------------------
# One replay


@dataclass
class PageRead:
    """One page read back and scored."""

    page: PageRecord
    turns_since: int
    reference: str
    fidelity: float
    fidelity_repaired: float
    ids_total: int
    ids_exact_raw: int
    ids_exact: int
    ids_by_kind: dict[str, list[int]]
    decoder_seconds: float
    wall_seconds: float
    turn_text: dict[int, str]
    """Recalled text per turn id (the whole page's text when the decoder gave no lines)."""
    scope: str
    """'turn' when the decoder read line by line, else 'page'."""


@dataclass
class Replay:
    label: str
    session: Session
    memory: OpticalMemory
    turn_ids: dict[str, int]
    """Source turn id → memory turn id."""
    series: list[int] = field(default_factory=list)
    """Tokens the model sees (text + page positions as the backend counts them) after each turn."""
    compress_seconds: list[float] = field(default_factory=list)
    over_budget: bool = False
    reads: dict[int, PageRead] = field(default_factory=dict)


def _replay(
    chat: Chat,
    *,
    label: str,
    cfg: BenchConfig,
    backend: Backend,
    folder: Path,
    policy,
    creation_mode: Mode,
) -> Replay:
    mem = OpticalMemory(
        folder / f"{label}.db",
        backend=backend,
        policy=policy,
        creation_mode=creation_mode,
        keep_recent_turns=cfg.keep_recent_turns,
        decode="lazy",
    )
    session = mem.session(chat.name[:256] or "chat")
    rep = Replay(label, session, mem, {})
    for turn in _bar(chat.turns, cfg, f"{chat.name} · {label} · replay", unit="turn"):
        rep.turn_ids[turn.id] = session.add_turn(
            turn.role, turn.content, name=turn.name, created_at=turn.created_at
        )
        t0 = time.perf_counter()
        result = session.compress()
        rep.compress_seconds.append(time.perf_counter() - t0)
        rep.series.append(result.tokens_after)
        rep.over_budget = result.over_budget
    return rep


def _read_pages(rep: Replay, pages: Sequence[PageRecord], cfg: BenchConfig, chat: Chat) -> None:
    s = rep.session
    total_turns = s.store.turn_count(s.id)
    for page in _bar(pages, cfg, f"{chat.name} · {rep.label} · decode", unit="page"):
        _, layout, _, _ = s.store.page_blobs(page.id)
        reference = restore_placeholders("\n".join(line.text for line in layout))
        t0 = time.perf_counter()
        recall = s.recall_page(page.id)
        wall = time.perf_counter() - t0
        by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for item in recall.verbatim:
            counts = by_kind[item.kind]
            counts[0] += 1
            counts[1] += item.value in recall.raw_text
            counts[2] += item.value in recall.text
        if recall.turns:
            turn_text, scope = dict(recall.turns), "turn"
        else:
            turn_text, scope = {tid: recall.text for tid in page.turn_ids}, "page"
        rep.reads[page.id] = PageRead(
            page=page,
            turns_since=total_turns - page.last_turn_seq,
            reference=reference,
            fidelity=m.fidelity(recall.raw_text, reference),
            fidelity_repaired=m.fidelity(recall.text, reference),
            ids_total=len(recall.verbatim),
            ids_exact_raw=sum(c[1] for c in by_kind.values()),
            ids_exact=sum(c[2] for c in by_kind.values()),
            ids_by_kind=dict(by_kind),
            decoder_seconds=recall.seconds,
            wall_seconds=wall,
            turn_text=turn_text,
            scope=scope,
        )


def sample_pages(pages: Sequence[PageRecord], k: int) -> list[PageRecord]:
    """`k` pages spread evenly from first to last (all of them when k is 0 or ≥ len)."""
    n = len(pages)
    if k <= 0 or k >= n:
        return list(pages)
    if k == 1:
        return [pages[n // 2]]
    idx = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [pages[i] for i in idx]


# ---------------------------------------------------------------------------------------------
# Scoring a replay


def _recalled(rep: Replay, chat: Chat) -> Callable[[str], str | None]:
    """source turn id → the text the agent would get back for it (None: not decoded)."""
    s = rep.session
    unpaged = {t.id: t.content or "" for t in s.store.turns(s.id, paged=False)}
    pages_of: dict[int, list[PageRecord]] = defaultdict(list)
    for page in s.store.pages(s.id):
        for tid in page.turn_ids:
            pages_of[tid].append(page)

    def recalled(source_id: str) -> str | None:
        tid = rep.turn_ids[source_id]
        if tid in unpaged:
            return unpaged[tid]  # still in context as text
        parts = []
        for page in pages_of.get(tid, []):
            read = rep.reads.get(page.id)
            if read is None:
                return None
            parts.append(read.turn_text.get(tid, ""))
        return "\n".join(parts)

    return recalled


def _survival(outcomes: Sequence[bool | None]) -> dict[str, Any]:
    measured = [o for o in outcomes if o is not None]
    survived = sum(measured)
    return {
        "eligible": len(measured),
        "survived": survived,
        "share": _r(m.share(survived, len(measured))),
        "not_measured": len(outcomes) - len(measured),
    }


def _question_outcome(q, recalled: Callable[[str], str | None]) -> bool | None:
    texts = [recalled(e) for e in q.evidence]
    if any(t is None for t in texts):
        return None
    return m.answer_found(q.answer, "\n".join(t or "" for t in texts))


def _fidelity(reads: Sequence[PageRead], decoder: str) -> dict[str, Any]:
    vals = [r.fidelity for r in reads]
    return {
        "mean": _r(m.mean(vals)),
        "min": _r(min(vals) if vals else None),
        "mean_with_verbatim": _r(m.mean(r.fidelity_repaired for r in reads)),
        "pages": len(vals),
        "decoder": decoder,
    }


def _identifiers(reads: Sequence[PageRead]) -> dict[str, Any]:
    total = sum(r.ids_total for r in reads)
    raw = sum(r.ids_exact_raw for r in reads)
    fixed = sum(r.ids_exact for r in reads)
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in reads:
        for kind, c in r.ids_by_kind.items():
            for i in range(3):
                kinds[kind][i] += c[i]
    return {
        "total": total,
        "exact_ocr": raw,
        "exact_with_verbatim": fixed,
        "share_ocr": _r(m.share(raw, total)),
        "share_with_verbatim": _r(m.share(fixed, total)),
        "by_kind": {
            k: {"total": c[0], "exact_ocr": c[1], "exact_with_verbatim": c[2]}
            for k, c in sorted(kinds.items())
        },
    }


def _timing(rep: Replay, reads: Sequence[PageRead]) -> dict[str, Any]:
    cs = rep.compress_seconds
    dec = sum(r.decoder_seconds for r in reads)
    chars = sum(r.page.chars for r in reads)
    return {
        "compress_s_total": _r(sum(cs)),
        "compress_s_mean": _r(m.mean(cs)),
        "compress_s_max": _r(max(cs) if cs else None),
        "recall_pages": len(reads),
        "recall_s_total": _r(sum(r.wall_seconds for r in reads)),
        "recall_s_per_page": _r(m.mean(r.wall_seconds for r in reads)),
        "decoder_s_total": _r(dec),
        "decoder_chars_per_s": _r(chars / dec if dec > 0 else None, 1),
    }


def _seen(rep: Replay, consumers: Sequence[str], text_tokens: int) -> dict[str, Any]:
    out = {}
    for c in consumers:
        seen = rep.session.stats(consumer=c).context_tokens  # page images and captions, priced by c
        out[c] = {"seen_tokens": seen, "savings": _r(m.savings(text_tokens, seen))}
    return out


def _page_row(read: PageRead, cost: Callable[[Mode], int]) -> dict[str, Any]:
    p = read.page
    positions = cost(p.mode)  # what the backend's model sees, not always DeepSeek-OCR v1's
    return {
        "page_id": p.id,
        "mode": p.mode.value,
        "creation_mode": p.creation_mode.value,
        "turns_since": read.turns_since,
        "age_bucket": m.age_bucket(read.turns_since),
        "turn_ids": list(p.turn_ids),
        "text_tokens": p.text_tokens,
        "positions": positions,
        "compression": _r(m.compression(p.text_tokens, positions)),
        "chars": p.chars,
        "font_px": p.font_px,
        "canvas": p.canvas,
        "fidelity": _r(read.fidelity),
        "fidelity_with_verbatim": _r(read.fidelity_repaired),
        "identifiers": read.ids_total,
        "identifiers_exact_ocr": read.ids_exact_raw,
        "decoder_s": _r(read.decoder_seconds),
        "recall_scope": read.scope,
    }


# ---------------------------------------------------------------------------------------------
# One chat


def run_chat(chat: Chat, cfg: BenchConfig, backend: Backend, folder: Path) -> dict[str, Any]:
    """Replay one chat under the default policy and each fixed mode; score everything."""
    chat = chat.limit(cfg.limit_turns)
    decoder = backend.name
    tokens = [count_tokens(t.content, DEFAULT_ENCODING) for t in chat.turns]
    text_tokens = sum(tokens)
    text_by_enc = {DEFAULT_ENCODING: text_tokens}
    if cfg.extra_encoding and cfg.extra_encoding != DEFAULT_ENCODING:
        text_by_enc[cfg.extra_encoding] = sum(count_tokens(t.content, cfg.extra_encoding) for t in chat.turns)
    content = {t.id: t.content for t in chat.turns}

    # --- the default policy: a token budget ---------------------------------------------
    rep = _replay(
        chat,
        label="budget",
        cfg=cfg,
        backend=backend,
        folder=folder,
        policy=BudgetPolicy(max_tokens=cfg.budget_tokens),
        creation_mode=cfg.creation_mode,
    )
    s = rep.session
    pages = s.store.pages(s.id)
    _read_pages(rep, pages, cfg, chat)
    reads = list(rep.reads.values())
    stats = s.stats()
    seen = stats.context_tokens
    extra = {}
    for enc in text_by_enc:
        if enc == DEFAULT_ENCODING:
            continue
        unpaged_enc = sum(count_tokens(t.content or "", enc) for t in s.store.turns(s.id, paged=False))
        extra[enc] = _r(m.savings(text_by_enc[enc], unpaged_enc + stats.positions))
    by_mode: dict[str, Any] = {}
    for mode in LADDER:
        rs = [r for r in reads if r.page.mode is mode]
        if rs:
            tt = sum(r.page.text_tokens for r in rs)
            pos = sum(backend.positions(r.page.mode) for r in rs)
            by_mode[mode.value] = {
                "pages": len(rs),
                "text_tokens": tt,
                "positions": pos,
                "compression": _r(m.compression(tt, pos)),
                "fidelity": _fidelity(rs, decoder),
            }
    by_age = []
    buckets: dict[str, list[PageRead]] = defaultdict(list)
    for r in sorted(reads, key=lambda r: r.turns_since):
        buckets[m.age_bucket(r.turns_since)].append(r)
    for label, rs in buckets.items():
        by_age.append(
            {
                "bucket": label,
                "pages": len(rs),
                "modes": sorted({r.page.mode.value for r in rs}, key=lambda v: Mode(v).rank),
                "fidelity": _fidelity(rs, decoder),
            }
        )

    recalled = _recalled(rep, chat)
    start = m.window_start(tokens, cfg.budget_tokens)
    window_text = sum(tokens[start:])
    in_window = {t.id for t in chat.turns[start:]}

    # --- fixed modes ----------------------------------------------------------------------
    fixed: dict[str, Any] = {}
    fixed_recalled: dict[str, Callable[[str], str | None]] = {}
    for mode in cfg.modes:
        frep = _replay(
            chat,
            label=mode.value,
            cfg=cfg,
            backend=backend,
            folder=folder,
            policy=NoAging(),
            creation_mode=mode,
        )
        fs = frep.session
        fpages = fs.store.pages(fs.id)
        _read_pages(frep, sample_pages(fpages, cfg.pages_per_mode), cfg, chat)
        freads = list(frep.reads.values())
        fstats = fs.stats()
        tt = sum(p.text_tokens for p in fpages)
        pos = sum(backend.positions(p.mode) for p in fpages)
        fixed_recalled[mode.value] = _recalled(frep, chat)
        fixed[mode.value] = {
            "pages": len(fpages),
            "pages_decoded": len(freads),
            "font_px": fpages[0].font_px if fpages else None,
            "canvas": mode.canvas,
            "positions_per_page": backend.positions(mode),
            "text_tokens": tt,
            "positions": pos,
            "compression": _r(m.compression(tt, pos)),
            "seen_tokens": fstats.context_tokens,
            "savings": _r(m.savings(text_tokens, fstats.context_tokens)),
            "consumers": _seen(frep, cfg.consumers, text_tokens),
            "fidelity": _fidelity(freads, decoder),
            "identifiers": _identifiers(freads),
            "timing": _timing(frep, freads),
            "series": frep.series,
            "page_rows": [_page_row(r, backend.positions) for r in freads],
        }
        frep.memory.close()

    # --- questions ------------------------------------------------------------------------
    answers = []
    outcomes: dict[str, list[bool | None]] = defaultdict(list)
    for q in chat.questions:
        if not q.answerable:
            continue
        in_source = m.answer_found(q.answer, "\n".join(content[e] for e in q.evidence))
        row: dict[str, Any] = {
            "question": q.question,
            "answer": q.answer,
            "category": q.category,
            "evidence": list(q.evidence),
            "in_source": in_source,
        }
        if in_source:
            row["optimem"] = _question_outcome(q, recalled)
            row["sliding_window"] = all(e in in_window for e in q.evidence)
            row["full_history"] = True
            row["archive"] = True
            row["modes"] = {k: _question_outcome(q, f) for k, f in fixed_recalled.items()}
            for key in ("optimem", "sliding_window", "full_history", "archive"):
                outcomes[key].append(row[key])
            for k, v in row["modes"].items():
                outcomes[f"mode:{k}"].append(v)
        answers.append(row)
    for k in fixed:
        fixed[k]["answer_survival"] = _survival(outcomes.get(f"mode:{k}", []))
    answerable = sum(q.answerable for q in chat.questions)

    result = {
        "name": chat.name,
        "source": chat.source,
        "format": chat.format,
        "turns": len(chat.turns),
        "skipped_turns": chat.skipped_turns,
        "limited_to": chat.meta.get("limited_to"),
        "text_tokens": text_by_enc,
        "questions": {
            "total": len(chat.questions),
            "answerable": answerable,
            "in_source": sum(1 for a in answers if a["in_source"]),
        },
        "optimem": {
            "policy": f"budget:{cfg.budget_tokens}",
            "creation_mode": cfg.creation_mode.value,
            "pages": len(pages),
            "unpaged_tokens": stats.unpaged_tokens,
            "positions": stats.positions,
            "page_tokens": stats.page_tokens,
            "seen_tokens": seen,
            "savings": _r(m.savings(text_tokens, seen)),
            "savings_by_encoding": extra,
            "over_budget": rep.over_budget,
            "compression": _r(stats.compression),
            "consumers": _seen(rep, cfg.consumers, text_tokens),
            "fidelity": _fidelity(reads, decoder),
            "by_mode": by_mode,
            "by_age": by_age,
            "answer_survival": _survival(outcomes["optimem"]),
            "identifiers": _identifiers(reads),
            "timing": _timing(rep, reads),
            "series": rep.series,
            "page_rows": [_page_row(r, backend.positions) for r in reads],
        },
        "baselines": {
            "full_history": {
                "seen_tokens": text_tokens,
                "savings": 1.0,
                "answer_survival": _survival(outcomes["full_history"]),
                "series": _cumsum(tokens),
            },
            "sliding_window": {
                "budget_tokens": cfg.budget_tokens,
                "seen_tokens": window_text,
                "savings": _r(m.savings(text_tokens, window_text)),
                "turns_kept": len(chat.turns) - start,
                "turns_dropped": start,
                "answer_survival": _survival(outcomes["sliding_window"]),
                "series": m.window_series(tokens, cfg.budget_tokens),
            },
            "archive": {
                "seen_tokens": seen,
                "savings": _r(m.savings(text_tokens, seen)),
                "answer_survival": _survival(outcomes["archive"]),
                "series": rep.series,
                "note": "same context as optimem; recall reads the stored source text (upper bound)",
            },
        },
        "modes": fixed,
        "answers": answers,
    }
    rep.memory.close()
    return result


# ---------------------------------------------------------------------------------------------
# Many chats


def run(chats: Sequence[Chat], cfg: BenchConfig) -> dict[str, Any]:
    """Benchmark `chats`; returns the JSON document (see docs/bench.md for its schema)."""
    if not chats:
        raise InputError("nothing to benchmark: no chats given")
    backend = get_backend(cfg.backend)
    double = is_test_double(backend)
    if double and not cfg.allow_test_double:
        raise InputError(
            "the 'test-double' backend reads the page layout, not pixels, so it cannot measure "
            "fidelity or speed; choose a real OCR backend (tesseract, rapidocr) or pass "
            "--allow-test-double for a plumbing check"
        )
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="optimem-bench-") as tmp:
        folder = Path(cfg.workdir) if cfg.workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for i, chat in enumerate(chats):
            sub = folder / f"{i:03d}"
            sub.mkdir(exist_ok=True)
            results.append(run_chat(chat, cfg, backend, sub))
    warnings = []
    if double:
        warnings.append(TEST_DOUBLE_WARNING)
    if cfg.pages_per_mode:
        warnings.append(
            f"fixed-mode fidelity decodes a sample of {cfg.pages_per_mode} pages per mode and chat "
            "(--pages-per-mode 0 decodes all); the budget run decodes every page"
        )
    missing = sum(c["questions"]["answerable"] - c["questions"]["in_source"] for c in results)
    if missing:
        warnings.append(
            f"{missing} answerable questions have answers not written in their evidence turns "
            "(paraphrased or inferred); survival counts only those whose answer text is there"
        )
    if any(c["optimem"]["over_budget"] for c in results):
        warnings.append(
            "the budget could not be met with every page at the lowest mode: recent text alone "
            "or the pages at Tiny exceed it"
        )
    return {
        "schema": SCHEMA_ID,
        "optimem_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "decoder": {
            "name": backend.name,
            "fingerprint": backend.fingerprint(),
            "test_double": double,
        },
        "warnings": warnings,
        "config": {
            "budget_tokens": cfg.budget_tokens,
            "modes": [mode.value for mode in cfg.modes],
            "pages_per_mode": cfg.pages_per_mode,
            "limit_turns": cfg.limit_turns,
            "keep_recent_turns": cfg.keep_recent_turns,
            "creation_mode": cfg.creation_mode.value,
            "encoding": DEFAULT_ENCODING,
            "extra_encoding": cfg.extra_encoding,
            "answer_threshold": m.ANSWER_THRESHOLD,
        },
        "consumers": {
            name: {
                "label": c.label,
                "rule": c.rule,
                "source": c.source,
                "page_tokens": {mode.value: m.page_tokens(name, mode) for mode in LADDER},
            }
            for name, c in m.CONSUMERS.items()
            if name in cfg.consumers
        },
        "chats": results,
        "overall": _overall(results, cfg, backend.name),
        "paper_reference": {
            "source": m.PAPER_SOURCE,
            "points": [
                {
                    "mode": p.mode,
                    "precision": p.precision,
                    "compression": p.compression,
                    "text_tokens": p.text_tokens,
                }
                for p in m.PAPER_FOX
            ],
        },
        "seconds": _r(time.perf_counter() - started),
    }


def _overall(chats: Sequence[dict[str, Any]], cfg: BenchConfig, decoder: str) -> dict[str, Any]:
    text = sum(c["text_tokens"][DEFAULT_ENCODING] for c in chats)

    def pooled(get) -> dict[str, Any]:
        e = sum(get(c)["eligible"] for c in chats)
        s = sum(get(c)["survived"] for c in chats)
        n = sum(get(c)["not_measured"] for c in chats)
        return {"eligible": e, "survived": s, "share": _r(m.share(s, e)), "not_measured": n}

    def fid(rows: list[dict[str, Any]]) -> dict[str, Any]:
        vals = [r["fidelity"] for r in rows]
        return {
            "mean": _r(m.mean(vals)),
            "min": _r(min(vals) if vals else None),
            "mean_with_verbatim": _r(m.mean(r["fidelity_with_verbatim"] for r in rows)),
            "pages": len(vals),
            "decoder": decoder,
        }

    rows = [r for c in chats for r in c["optimem"]["page_rows"]]
    seen = sum(c["optimem"]["seen_tokens"] for c in chats)
    window = sum(c["baselines"]["sliding_window"]["seen_tokens"] for c in chats)
    ids_total = sum(c["optimem"]["identifiers"]["total"] for c in chats)
    ids_raw = sum(c["optimem"]["identifiers"]["exact_ocr"] for c in chats)
    ids_fix = sum(c["optimem"]["identifiers"]["exact_with_verbatim"] for c in chats)
    modes = {}
    for mode in cfg.modes:
        ms = [c["modes"][mode.value] for c in chats]
        tt = sum(x["text_tokens"] for x in ms)
        pos = sum(x["positions"] for x in ms)
        mseen = sum(x["seen_tokens"] for x in ms)
        modes[mode.value] = {
            "pages": sum(x["pages"] for x in ms),
            "pages_decoded": sum(x["pages_decoded"] for x in ms),
            "text_tokens": tt,
            "positions": pos,
            "compression": _r(m.compression(tt, pos)),
            "seen_tokens": mseen,
            "savings": _r(m.savings(text, mseen)),
            "fidelity": fid([r for x in ms for r in x["page_rows"]]),
            "answer_survival": pooled(lambda c, k=mode.value: c["modes"][k]["answer_survival"]),
        }
    by_age = defaultdict(list)
    for r in rows:
        by_age[r["age_bucket"]].append(r)
    by_final_mode = defaultdict(list)
    for r in rows:
        by_final_mode[r["mode"]].append(r)
    consumers = {}
    for name in cfg.consumers:
        cseen = sum(c["optimem"]["consumers"][name]["seen_tokens"] for c in chats)
        consumers[name] = {"seen_tokens": cseen, "savings": _r(m.savings(text, cseen))}
    return {
        "chats": len(chats),
        "turns": sum(c["turns"] for c in chats),
        "text_tokens": text,
        "optimem": {
            "pages": sum(c["optimem"]["pages"] for c in chats),
            "seen_tokens": seen,
            "savings": _r(m.savings(text, seen)),
            "consumers": consumers,
            "fidelity": fid(rows),
            "by_mode": {
                k: {"pages": len(v), "fidelity": fid(v)}
                for k, v in sorted(by_final_mode.items(), key=lambda kv: Mode(kv[0]).rank)
            },
            "by_age": [
                {"bucket": k, "pages": len(v), "fidelity": fid(v)}
                for k, v in sorted(by_age.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))
            ],
            "answer_survival": pooled(lambda c: c["optimem"]["answer_survival"]),
            "identifiers": {
                "total": ids_total,
                "exact_ocr": ids_raw,
                "exact_with_verbatim": ids_fix,
                "share_ocr": _r(m.share(ids_raw, ids_total)),
                "share_with_verbatim": _r(m.share(ids_fix, ids_total)),
            },
            "compress_s_total": _r(sum(c["optimem"]["timing"]["compress_s_total"] for c in chats)),
            "recall_s_total": _r(sum(c["optimem"]["timing"]["recall_s_total"] for c in chats)),
        },
        "baselines": {
            "full_history": {
                "seen_tokens": text,
                "savings": 1.0,
                "answer_survival": pooled(lambda c: c["baselines"]["full_history"]["answer_survival"]),
            },
            "sliding_window": {
                "seen_tokens": window,
                "savings": _r(m.savings(text, window)),
                "answer_survival": pooled(lambda c: c["baselines"]["sliding_window"]["answer_survival"]),
            },
            "archive": {
                "seen_tokens": seen,
                "savings": _r(m.savings(text, seen)),
                "answer_survival": pooled(lambda c: c["baselines"]["archive"]["answer_survival"]),
            },
        },
        "modes": modes,
    }


# ---------------------------------------------------------------------------------------------
# helpers


def _bar(items, cfg: BenchConfig, desc: str, unit: str):
    return tqdm(items, desc=desc, unit=unit, file=sys.stderr, disable=not cfg.progress, leave=False)


def _cumsum(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


def _r(value: float | None, digits: int = 4) -> float | None:
    if value is None:
        return None
    if value == float("inf"):
        return None
    return round(float(value), digits)
