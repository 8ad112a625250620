"""Run the benchmark: replay each chat under the budget policy and each fixed mode, score, pool.

For each chat the runner replays every turn through a session (add the turn, then
`compress()`, as an agent would) under the default budget policy, and once more per fixed
mode (pages typeset at that mode and never aged). At the end it reads pages back once each
with the chosen decoder and scores them. The baselines (full history, a sliding window of
the same budget, recall from the text archive) come from the same replay. The result is
one JSON-ready dict whose schema `optimem.bench.schema.SCHEMA` pins.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..aging.policies import BudgetPolicy, NoAging
from ..aging.pricing import CONSUMERS, page_tokens
from ..backends import Backend, get_backend
from ..errors import InputError
from ..modes import LADDER, Mode
from ..reading import proofread
from ..tokens import DEFAULT_ENCODING, count_tokens
from . import metrics as m
from . import score, strict
from .aggregate import overall
from .config import SCHEMA_ID, TEST_DOUBLE_WARNING, BenchConfig, is_test_double
from .datasets import Chat
from .machine import cores
from .read_ahead import ReadAhead, replayed
from .replay import Replay, ReplaySpec, read_pages, replay, sample_pages
from .score import r
from .shared_reads import SharedReads

__all__ = [
    "SCHEMA_ID",
    "BenchConfig",
    "Replays",
    "is_test_double",
    "replay_chat",
    "run",
    "run_chat",
    "sample_pages",
]


def _fixed_replay(chat: Chat, mode: Mode, cfg: BenchConfig, backend: Backend, folder: Path) -> Replay:
    """The chat replayed with pages typeset at `mode` and never aged."""
    return replay(chat, ReplaySpec(mode.value, NoAging(), mode), cfg=cfg, backend=backend, folder=folder)


def _fixed_mode(
    chat: Chat,
    mode: Mode,
    cfg: BenchConfig,
    backend: Backend,
    folder: Path,
    text_tokens: int,
    shared: SharedReads,
    rep: Replay | None = None,
    ahead: ReadAhead | None = None,
):
    """One replay with pages typeset at `mode` and never aged (`rep`, or made now); a sample
    of pages read back (or given an earlier replay's reads of the same images, see
    `SharedReads`)."""
    rep = rep or _fixed_replay(chat, mode, cfg, backend, folder)
    pages = rep.session.pages()
    read_pages(rep, sample_pages(pages, cfg.pages_per_mode), cfg, chat, shared, ahead)
    reads = list(rep.reads.values())
    stats = rep.session.stats()
    tt = sum(p.text_tokens for p in pages)
    pos = sum(p.positions for p in pages)
    row = {
        "pages": len(pages),
        "pages_decoded": len(reads),
        "font_px": pages[0].font_px if pages else None,
        "canvas": mode.canvas,
        "positions_per_page": backend.positions(mode),
        "text_tokens": tt,
        "positions": pos,
        "compression": r(m.compression(tt, pos)),
        "seen_tokens": stats.context_tokens,
        "savings": r(m.savings(text_tokens, stats.context_tokens)),
        "consumers": score.seen(rep, cfg.consumers, text_tokens),
        "fidelity": score.fidelity(reads, backend.name),
        "identifiers": score.identifiers(reads),
        "timing": score.timing(rep, reads),
        "series": rep.series,
        "page_rows": [score.page_row(x) for x in reads],
    }
    recalled = score.recalled_text(rep)
    rep.memory.close()
    return row, recalled


@dataclass
class Replays:
    """A chat's replays, made before any page is read (see `replay_chat`)."""

    chat: Chat
    folder: Path
    tokens: list[int]
    budget: Replay
    fixed: dict[Mode, Replay]
    targets: list[tuple[float, int, Replay]]
    """(target savings, budget tokens, replay) of each strict run."""
    shared: SharedReads


def _units(cfg: BenchConfig, tokens: Sequence[int]) -> list[ReplaySpec]:
    """Each replay of a chat: the budget run, each fixed mode, each strict target."""
    units = [ReplaySpec("budget", BudgetPolicy(max_tokens=cfg.budget_tokens), cfg.creation_mode)]
    units += [ReplaySpec(mode.value, NoAging(), mode) for mode in cfg.modes]
    units += [strict.target_spec(tokens, t, cfg) for t in cfg.target_savings]
    return units


def start_replays(chat: Chat, cfg: BenchConfig, folder: Path, ahead: ReadAhead) -> dict[str, Future]:
    """Every replay of `chat` handed to `ahead`'s workers, by label (`replay_chat` takes them)."""
    chat = chat.limit(cfg.limit_turns)
    tokens = [count_tokens(t.content, DEFAULT_ENCODING) for t in chat.turns]
    return {spec.label: ahead.replay(chat, spec, cfg=cfg, folder=folder) for spec in _units(cfg, tokens)}


def replay_chat(
    chat: Chat,
    cfg: BenchConfig,
    backend: Backend,
    folder: Path,
    ahead: ReadAhead | None = None,
    started: dict[str, Future] | None = None,
) -> Replays:
    """Replay one chat under the default policy, each fixed mode and each strict target (or
    take the replays `start_replays` handed to workers); with `ahead`, each replay's pages go
    to its workers as soon as the replay is done."""
    chat = chat.limit(cfg.limit_turns)
    tokens = [count_tokens(t.content, DEFAULT_ENCODING) for t in chat.turns]
    shared = SharedReads(backend)
    reps: dict[str, Replay] = {}
    fixed_labels = {mode.value for mode in cfg.modes}
    for spec in _units(cfg, tokens):
        make = functools.partial(replayed, started[spec.label]) if started is not None else replay
        rep = reps[spec.label] = make(chat, spec, cfg=cfg, backend=backend, folder=folder)
        if ahead is not None:
            pages = rep.session.pages()
            fixed_mode = spec.label in fixed_labels
            ahead.submit(rep, sample_pages(pages, cfg.pages_per_mode) if fixed_mode else pages, shared)
    targets = [(t, strict.target_budget(tokens, t), reps[strict.target_label(t)]) for t in cfg.target_savings]
    fixed = {mode: reps[mode.value] for mode in cfg.modes}
    return Replays(chat, folder, tokens, reps["budget"], fixed, targets, shared)


def run_chat(
    chat: Chat | Replays, cfg: BenchConfig, backend: Backend, folder: Path, ahead: ReadAhead | None = None
) -> dict[str, Any]:
    """Replay one chat under the default policy and each fixed mode (or take `replay_chat`'s
    replays), read the pages back and score everything."""
    made = chat if isinstance(chat, Replays) else replay_chat(chat, cfg, backend, folder)
    chat, tokens, shared = made.chat, made.tokens, made.shared
    decoder = backend.name
    text_tokens = sum(tokens)
    text_by_enc = {DEFAULT_ENCODING: text_tokens}
    if cfg.extra_encoding and cfg.extra_encoding != DEFAULT_ENCODING:
        text_by_enc[cfg.extra_encoding] = sum(count_tokens(t.content, cfg.extra_encoding) for t in chat.turns)
    content = {t.id: t.content for t in chat.turns}

    # --- the default policy: a token budget ---------------------------------------------
    rep = made.budget
    s = rep.session
    pages = s.pages()
    read_pages(rep, pages, cfg, chat, shared, ahead)
    reads = list(rep.reads.values())
    stats = s.stats()
    seen = stats.context_tokens
    extra = {}
    for enc in text_by_enc:
        if enc != DEFAULT_ENCODING:
            unpaged_enc = sum(count_tokens(t.content or "", enc) for t in rep.unpaged())
            extra[enc] = r(m.savings(text_by_enc[enc], unpaged_enc + stats.positions))
    recalled = score.recalled_text(rep)
    start = m.window_start(tokens, cfg.budget_tokens)
    window_text = sum(tokens[start:])
    in_window = {t.id for t in chat.turns[start:]}

    # --- fixed modes ----------------------------------------------------------------------
    fixed: dict[str, Any] = {}
    fixed_recalled = {}
    for mode, fixed_rep in made.fixed.items():
        fixed[mode.value], fixed_recalled[mode.value] = _fixed_mode(
            chat, mode, cfg, backend, made.folder, text_tokens, shared, fixed_rep, ahead
        )

    # --- strict runs at target savings ------------------------------------------------------
    targets = [
        strict.score_run(target_rep, chat, t, budget, cfg, backend, tokens, shared, ahead)
        for t, budget, target_rep in made.targets
    ]

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
            row["optimem"] = score.question_outcome(q, recalled)
            row["sliding_window"] = all(e in in_window for e in q.evidence)
            row["full_history"] = True
            row["archive"] = True
            row["modes"] = {k: score.question_outcome(q, f) for k, f in fixed_recalled.items()}
            for key in ("optimem", "sliding_window", "full_history", "archive"):
                outcomes[key].append(row[key])
            for k, v in row["modes"].items():
                outcomes[f"mode:{k}"].append(v)
        answers.append(row)
    for k in fixed:
        fixed[k]["answer_survival"] = score.survival(outcomes.get(f"mode:{k}", []))

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
            "answerable": sum(q.answerable for q in chat.questions),
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
            "savings": r(m.savings(text_tokens, seen)),
            "savings_by_encoding": extra,
            "over_budget": rep.over_budget,
            "compression": r(stats.compression),
            "consumers": score.seen(rep, cfg.consumers, text_tokens),
            "fidelity": score.fidelity(reads, decoder),
            "by_mode": score.by_mode(reads, decoder),
            "by_age": score.by_age(reads, decoder),
            "answer_survival": score.survival(outcomes["optimem"]),
            "identifiers": score.identifiers(reads),
            "timing": score.timing(rep, reads),
            "series": rep.series,
            "page_rows": [score.page_row(x) for x in reads],
        },
        "baselines": {
            "full_history": {
                "seen_tokens": text_tokens,
                "savings": 1.0,
                "answer_survival": score.survival(outcomes["full_history"]),
                "series": score.cumsum(tokens),
            },
            "sliding_window": {
                "budget_tokens": cfg.budget_tokens,
                "seen_tokens": window_text,
                "savings": r(m.savings(text_tokens, window_text)),
                "turns_kept": len(chat.turns) - start,
                "turns_dropped": start,
                "answer_survival": score.survival(outcomes["sliding_window"]),
                "series": m.window_series(tokens, cfg.budget_tokens),
            },
            "archive": {
                "seen_tokens": seen,
                "savings": r(m.savings(text_tokens, seen)),
                "answer_survival": score.survival(outcomes["archive"]),
                "series": rep.series,
                "note": "same context as optimem; recall reads the stored source text (upper bound)",
            },
        },
        "modes": fixed,
        "targets": targets,
        "window_curve": strict.window_curve(chat, tokens),
        "answers": answers,
    }
    rep.memory.close()
    return result


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
    jobs = read_ahead_jobs(cfg, backend)
    with tempfile.TemporaryDirectory(prefix="optimem-bench-") as tmp:
        folder = Path(cfg.workdir) if cfg.workdir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        subs = [folder / f"{i:03d}" for i in range(len(chats))]
        for sub in subs:
            sub.mkdir(exist_ok=True)
        with ReadAhead(str(cfg.backend), jobs) if jobs else nullcontext() as ahead:
            # every replay of every chat handed to the workers first, then each chat's pages
            # as its replays come back, so the cores never wait on this process
            handed = [
                start_replays(c, cfg, sub, ahead) if ahead else None
                for c, sub in zip(chats, subs, strict=True)
            ]
            made = [
                replay_chat(chat, cfg, backend, sub, ahead, st)
                for chat, sub, st in zip(chats, subs, handed, strict=True)
            ]
            results = [run_chat(m, cfg, backend, m.folder, ahead) for m in made]
    return {
        "schema": SCHEMA_ID,
        "optimem_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "decoder": {
            "name": backend.name,
            "label": f"{backend.name}+proofread" if cfg.reading_aids else backend.name,
            "fingerprint": proofread.fingerprint(backend) if cfg.reading_aids else backend.fingerprint(),
            "test_double": double,
        },
        "warnings": _warnings(results, cfg, double),
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
            "target_savings": list(cfg.target_savings),
            "reading_aids": cfg.reading_aids,
            "read_ahead_processes": jobs,
        },
        "consumers": {
            name: {
                "label": c.label,
                "rule": c.rule,
                "source": c.source,
                "page_tokens": {mode.value: page_tokens(name, mode) for mode in LADDER},
            }
            for name, c in CONSUMERS.items()
            if name in cfg.consumers
        },
        "chats": results,
        "overall": overall(results, cfg, backend.name),
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
        "seconds": r(time.perf_counter() - started),
    }


def read_ahead_jobs(cfg: BenchConfig, backend: Backend) -> int:
    """Worker processes that read pages ahead (0: this process reads them, as it must for a
    backend given as an object or one that must stay in one process, a GPU model)."""
    jobs = cfg.jobs if cfg.jobs is not None else cores()
    if jobs < 2 or not isinstance(cfg.backend, str) or not backend.capabilities.in_processes:
        return 0
    return jobs


def _warnings(results: Sequence[dict[str, Any]], cfg: BenchConfig, double: bool) -> list[str]:
    warnings = []
    if double:
        warnings.append(TEST_DOUBLE_WARNING)
    if cfg.pages_per_mode:
        warnings.append(
            f"fixed-mode fidelity decodes a sample of {cfg.pages_per_mode} pages per mode and chat "
            "(--pages-per-mode 0 decodes all); the budget run decodes every page"
        )
    shared = sum(
        c["optimem"]["timing"]["pages_shared"]
        + sum(m["timing"]["pages_shared"] for m in c["modes"].values())
        + sum(t["pages_shared"] for t in c["targets"])
        for c in results
    )
    if shared:
        warnings.append(
            f"{shared} pages read back were the same image as a page an earlier replay of the chat "
            "had read (this decoder reads pixels, not modes): they took that read, and are left out "
            "of the reading times"
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
    return warnings
