"""Strict runs at target savings: exact answers, what fits the context, side-channel size.

For each target T the chat is replayed under a budget of (its text tokens ÷ T), every page
is read back, and each question is scored four ways: the whole answer found exactly
(normalised words, one unbroken sequence) or loosely (fuzzy ≥ 0.9), counting every page
reachable by recall or only the pages `Session.context(budget)` shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..aging.policies import BudgetPolicy
from ..backends import Backend
from . import metrics as m
from . import score
from .config import BenchConfig
from .datasets import Chat, Question
from .read_ahead import ReadAhead
from .replay import Replay, ReplaySpec, read_pages, replay
from .score import r
from .shared_reads import SharedReads

#: Savings the sliding-window curve is drawn at (the plot's x axis, 1x–25x).
WINDOW_TARGETS: tuple[int, ...] = tuple(range(1, 26))


def eligible(chat: Chat) -> list[Question]:
    """Answerable questions whose answer is written, word for word, in their evidence turns."""
    content = {t.id: t.content for t in chat.turns}
    return [
        q
        for q in chat.questions
        if q.answerable and m.answer_exact(q.answer, "\n".join(content[e] for e in q.evidence))
    ]


def window_curve(chat: Chat, tokens: Sequence[int]) -> list[dict[str, Any]]:
    """Exact survival of a sliding window whose budget is text ÷ T, for T in 1..25."""
    qs = eligible(chat)
    index = {t.id: i for i, t in enumerate(chat.turns)}
    text = sum(tokens)
    out = []
    for target in WINDOW_TARGETS:
        budget = max(1, int(text / target))
        start = m.window_start(tokens, budget)
        kept = sum(tokens[start:])
        survived = sum(all(index[e] >= start for e in q.evidence) for q in qs)
        out.append({"target": target, "budget_tokens": budget, "seen_tokens": kept, "survived": survived,
                    "eligible": len(qs)})  # fmt: skip
    return out


def _visible(rep: Replay, budget: int) -> tuple[set[int], set[int]]:
    """Memory turn ids `context(budget)` shows in full, and those among them shown as source text
    (recent turns, and pages the context shows as their text because that is cheaper)."""
    ctx = rep.session.context(budget_tokens=budget)
    shown: set[int] = set()
    as_text: set[int] = set()
    for item in ctx.items:
        if item.turn is not None:
            shown.add(item.turn.id)
            as_text.add(item.turn.id)
        if item.page is not None:
            shown.update(item.page.turn_ids)
            if item.presented == "text":
                as_text.update(item.page.turn_ids)
    omitted = {tid for p in rep.session.pages() if p.id in set(ctx.omitted_page_ids) for tid in p.turn_ids}
    return shown - omitted, as_text - omitted  # a turn split over a shown and an omitted page is not seen


def _side_channel(rep: Replay) -> dict[str, Any]:
    """Bytes kept beside each page (verbatim strings, line checks, rare words), as a share of
    the page's text bytes."""
    shares, kept, strings, text = [], 0, 0, 0
    for read in rep.reads.values():
        k = read.recall.side_channel_bytes
        t = len(read.reference.encode())
        kept, text = kept + k, text + t
        strings += sum(len(v.value.encode()) for v in read.recall.verbatim)
        if t:
            shares.append(k / t)
    return {
        "bytes": kept,
        "strings_bytes": strings,
        "aid_bytes": kept - strings,
        "page_text_bytes": text,
        "share": r(m.share(kept, text)),
        "page_share_max": r(max(shares) if shares else None),
        "pages_over_10pct": sum(s > 0.10 for s in shares),
    }


def _lines(reads: Sequence[Any]) -> dict[str, Any]:
    """Lines with a word check, and those recalled exactly (their words pass the check)."""
    checked = sum(x.recall.lines_checked for x in reads)
    exact = sum(x.recall.lines_exact for x in reads)
    return {"checked": checked, "exact": exact, "share": r(m.share(exact, checked))}


def run_target(
    chat: Chat,
    target: float,
    cfg: BenchConfig,
    backend: Backend,
    folder: Path,
    tokens: Sequence[int],
    shared: SharedReads | None = None,
) -> dict[str, Any]:
    """One strict run: replay at text ÷ `target`, read every page (or take an earlier replay's
    read of the same image, with `shared`), score every eligible question."""
    rep, budget = replay_target(chat, target, cfg, backend, folder, tokens)
    return score_run(rep, chat, target, budget, cfg, backend, tokens, shared)


def replay_target(
    chat: Chat, target: float, cfg: BenchConfig, backend: Backend, folder: Path, tokens: Sequence[int]
) -> tuple[Replay, int]:
    """The replay of a strict run at text ÷ `target`, and its budget (nothing read yet)."""
    spec = target_spec(tokens, target, cfg)
    return replay(chat, spec, cfg=cfg, backend=backend, folder=folder), target_budget(tokens, target)


def target_spec(tokens: Sequence[int], target: float, cfg: BenchConfig) -> ReplaySpec:
    """The replay of a strict run at text ÷ `target`: its label, its budget policy, the
    configured creation mode."""
    budget = BudgetPolicy(max_tokens=target_budget(tokens, target))
    return ReplaySpec(target_label(target), budget, cfg.creation_mode)


def target_budget(tokens: Sequence[int], target: float) -> int:
    """The token budget of a strict run: the chat's text tokens ÷ `target`."""
    return max(1, int(sum(tokens) / target))


def target_label(target: float) -> str:
    """The name of a strict run's replay (and of its database file)."""
    return f"x{target:g}"


def score_run(
    rep: Replay,
    chat: Chat,
    target: float,
    budget: int,
    cfg: BenchConfig,
    backend: Backend,
    tokens: Sequence[int],
    shared: SharedReads | None = None,
    ahead: ReadAhead | None = None,
) -> dict[str, Any]:
    """Read every page of a finished replay and score every eligible question (closes its memory)."""
    text = sum(tokens)
    pages = rep.session.pages()
    read_pages(rep, pages, cfg, chat, shared, ahead)
    recalled = score.recalled_text(rep)
    visible, as_text = _visible(rep, budget)
    content = {t.id: t.content for t in chat.turns}
    qs = eligible(chat)
    counts = dict.fromkeys(("exact", "loose", "exact_in_context", "loose_in_context", "window"), 0)
    misses = []
    start = m.window_start(tokens, budget)
    index = {t.id: i for i, t in enumerate(chat.turns)}
    for q in qs:
        got = "\n".join(content[e] if rep.turn_ids[e] in as_text else recalled(e) or "" for e in q.evidence)
        exact, loose = m.answer_exact(q.answer, got), m.answer_found(q.answer, got)
        in_ctx = all(rep.turn_ids[e] in visible for e in q.evidence)
        counts["exact"] += exact
        counts["loose"] += loose
        counts["exact_in_context"] += exact and in_ctx
        counts["loose_in_context"] += loose and in_ctx
        counts["window"] += all(index[e] >= start for e in q.evidence)
        if not exact:
            misses.append({"answer": q.answer, "evidence": list(q.evidence), "loose": loose})
    stats = rep.session.stats()
    shown = rep.session.context(budget_tokens=budget).tokens
    reads = list(rep.reads.values())
    result = {
        "target": target,
        "text_tokens": text,
        "budget_tokens": budget,
        "seen_tokens": stats.context_tokens,
        "savings": r(m.savings(text, stats.context_tokens)),
        "shown_tokens": shown,
        "savings_in_context": r(m.savings(text, shown)),
        "pages": len(pages),
        "pages_shared": sum(x.shared_from is not None for x in reads),
        "pages_in_context": len(pages) - len(rep.session.context(budget_tokens=budget).omitted_page_ids),
        "modes": {
            mode: sum(p.mode.value == mode for p in pages) for mode in sorted({p.mode.value for p in pages})
        },
        "eligible": len(qs),
        "survival": {k: {"survived": v, "share": r(m.share(v, len(qs)))} for k, v in counts.items()},
        "identifiers": score.identifiers(reads),
        "fidelity": score.fidelity(reads, backend.name),
        "side_channel": _side_channel(rep),
        "lines": _lines(reads),
        "misses": misses,
    }
    rep.memory.close()
    return result


def pool(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The strict runs of one target over every chat, pooled."""
    text = sum(x["text_tokens"] for x in runs)
    seen = sum(x["seen_tokens"] for x in runs)
    shown = sum(x["shown_tokens"] for x in runs)
    n = sum(x["eligible"] for x in runs)
    keys = runs[0]["survival"].keys()
    surv = {k: sum(x["survival"][k]["survived"] for x in runs) for k in keys}
    ids = [x["identifiers"] for x in runs]
    total, exact = sum(i["total"] for i in ids), sum(i["exact_with_verbatim"] for i in ids)
    sc_bytes = sum(x["side_channel"]["bytes"] for x in runs)
    sc_strings = sum(x["side_channel"]["strings_bytes"] for x in runs)
    sc_text = sum(x["side_channel"]["page_text_bytes"] for x in runs)
    checked = sum(x["lines"]["checked"] for x in runs)
    exact_lines = sum(x["lines"]["exact"] for x in runs)
    return {
        "target": runs[0]["target"],
        "seen_tokens": seen,
        "text_tokens": text,
        "savings": r(m.savings(text, seen)),
        "shown_tokens": shown,
        "savings_in_context": r(m.savings(text, shown)),
        "pages": sum(x["pages"] for x in runs),
        "pages_shared": sum(x["pages_shared"] for x in runs),
        "pages_in_context": sum(x["pages_in_context"] for x in runs),
        "eligible": n,
        "survival": {k: {"survived": v, "share": r(m.share(v, n))} for k, v in surv.items()},
        "identifiers": {
            "total": total,
            "exact_with_verbatim": exact,
            "share_with_verbatim": r(m.share(exact, total)),
        },
        "side_channel": {
            "bytes": sc_bytes,
            "strings_bytes": sc_strings,
            "aid_bytes": sc_bytes - sc_strings,
            "page_text_bytes": sc_text,
            "share": r(m.share(sc_bytes, sc_text)),
        },
        "lines": {"checked": checked, "exact": exact_lines, "share": r(m.share(exact_lines, checked))},
    }


def pool_window(curves: Sequence[Sequence[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Sliding-window curves of every chat pooled point by point (same targets)."""
    out = []
    for points in zip(*curves, strict=True):
        seen = sum(p["seen_tokens"] for p in points)
        n, s = sum(p["eligible"] for p in points), sum(p["survived"] for p in points)
        out.append({"target": points[0]["target"], "seen_tokens": seen, "survived": s, "eligible": n,
                    "share": r(m.share(s, n))})  # fmt: skip
    return out
