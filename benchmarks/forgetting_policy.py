"""Forget the right things: plain age order against salient aging and rehearsal, at the same budget.

    python benchmarks/forgetting_policy.py ../shared/data/locomo/30.json ../shared/data/locomo/42.json \\
        --targets 10 --variants plain,salient,salient+rehearse --out benchmarks/results/forgetting_policy.json
    python benchmarks/forgetting_policy.py ../shared/data/locomo --paging-only --targets 8,10,20 \\
        --variants plain,salient,salient8 --out benchmarks/results/forgetting_policy_paging.json

Each chat is replayed turn by turn (compress after every turn) under a budget of its text
tokens ÷ target, once per variant:

- ``plain``: `BudgetPolicy`, pages age in age order (the default);
- ``salient``: `BudgetPolicy(salience=True)`, small talk ages before pages dense in names,
  numbers and identifiers, within a window of 4 pages;
- ``salient8``: the same with a window of 8 pages;
- ``rehearse``: plain age order, with `OpticalMemory(rehearse=True)`;
- ``salient+rehearse``: both.

Where rehearsal is on, an agent recalling is simulated: when a LoCoMo session ends (before
the first turn of the next one is added), the memory is searched with that next turn's text
(pages decoded first, as `search(wait=True)` does) and the top hit is recalled by id, which
rehearses it. Then every page is read once more (rehearsal off) and the questions are scored
with the strict benchmark's rules (`optimem.bench.strict`): exact and loose answer survival
in recalled text, counting every page reachable by recall and only the pages in the context,
and identifier exactness. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from optimem import OpticalMemory
from optimem.aging.policies import BudgetPolicy
from optimem.backends import get_backend
from optimem.bench.config import BenchConfig
from optimem.bench.datasets import Chat, load_many
from optimem.bench.replay import Replay, bar
from optimem.bench.strict import eligible, score_run
from optimem.tokens import DEFAULT_ENCODING, count_tokens

VARIANTS = ("plain", "salient", "salient8", "rehearse", "salient+rehearse")


def session_of(turn_id: str) -> str:
    """LoCoMo's dialogue ids read 'D<session>:<turn>'; other chats are one session."""
    return turn_id.split(":", 1)[0] if ":" in turn_id else ""


def replay(chat: Chat, variant: str, budget: int, cfg: BenchConfig, backend, db: Path) -> tuple[Replay, dict]:
    """Replay `chat` under `variant`; returns the replay and what the simulated agent did."""
    salient, rehearse = "salient" in variant, "rehearse" in variant
    window = 8 if "salient8" in variant else 4
    mem = OpticalMemory(
        db,
        backend=backend,
        policy=BudgetPolicy(max_tokens=budget, salience=salient, window=window),
        creation_mode=cfg.creation_mode,
        keep_recent_turns=cfg.keep_recent_turns,
        decode="lazy",
        reading_aids=cfg.reading_aids,
        rehearse=rehearse,
    )
    s = mem.session(chat.name)
    rep = Replay(variant, s, mem, {})
    agent = {"recalls": 0, "sharpened": 0, "already_sharp": 0, "no_room": 0, "no_hit": 0, "seconds": 0.0}
    previous = None
    for turn in bar(chat.turns, cfg, f"{chat.name} · {variant} · replay", unit="turn"):
        here = session_of(turn.id)
        if rehearse and previous is not None and here != previous and s.pages():
            t0 = time.perf_counter()
            hits = s.search(turn.content, limit=1, wait=True)
            if hits:
                page = s.page(hits[0].page_id)
                s.recall_page(page.id)
                agent["recalls"] += 1
                if page.mode is page.creation_mode:
                    agent["already_sharp"] += 1  # nothing sharper to give it
                elif s.page(page.id).mode.rank < page.mode.rank:
                    agent["sharpened"] += 1
                else:
                    agent["no_room"] += 1  # the budget would age it straight back
            else:
                agent["no_hit"] += 1
            agent["seconds"] += time.perf_counter() - t0
        previous = here
        rep.step(turn)
    mem.rehearse = False  # scoring reads every page: that is the benchmark, not the agent
    agent["seconds"] = round(agent["seconds"], 1)
    return rep, agent


def evidence_sharpness(rep: Replay, chat: Chat) -> dict[str, int]:
    """Eligible questions by where their evidence ends up: all of it still text, on pages kept
    above Tiny, or on at least one Tiny page (decoder-independent: pages and modes only)."""
    pages_of: dict[int, list[Any]] = {}
    for page in rep.session.pages():
        for tid in page.turn_ids:
            pages_of.setdefault(tid, []).append(page)
    out = {"text": 0, "sharp": 0, "tiny": 0}
    for q in eligible(chat):
        pages = [p for e in q.evidence for p in pages_of.get(rep.turn_ids[e], [])]
        key = "text" if not pages else "tiny" if any(p.mode.value == "tiny" for p in pages) else "sharp"
        out[key] += 1
    return out


def paging_only(
    chats: list[Chat], targets: list[float], variants: list[str], cfg: BenchConfig, backend
) -> list:
    """Plain against salient aging without OCR: savings, modes and where the evidence ends up."""
    rows = []
    print(
        f"{'chat':<8} {'variant':<10} {'tgt':>5} {'saved':>7} {'modes':<22} evidence (text / above Tiny / Tiny)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            for chat in chats:
                text = sum(count_tokens(t.content, DEFAULT_ENCODING) for t in chat.turns)
                budget = max(1, int(text / target))
                for variant in variants:
                    rep, _ = replay(
                        chat,
                        variant,
                        budget,
                        cfg,
                        backend,
                        Path(tmp) / f"{chat.name}-{target:g}-{variant}.db",
                    )
                    pages = rep.session.pages()
                    modes = {
                        m: sum(p.mode.value == m for p in pages)
                        for m in sorted({p.mode.value for p in pages})
                    }
                    ev = evidence_sharpness(rep, chat)
                    savings = round(rep.session.stats().savings, 2)
                    rows.append({"chat": chat.name, "variant": variant, "target": target, "budget_tokens": budget,
                                 "savings": savings, "modes": modes, "evidence": ev})  # fmt: skip
                    print(f"{chat.name:<8} {variant:<10} {target:>4g}x {savings:>6.2f}x "
                          f"{' '.join(f'{m}:{n}' for m, n in modes.items()):<22} "
                          f"{ev['text']} / {ev['sharp']} / {ev['tiny']}", flush=True)  # fmt: skip
                    rep.memory.close()
    return rows


def row(chat: Chat, variant: str, target: float, scored: dict[str, Any], agent: dict, seconds: float) -> dict:
    surv = scored["survival"]
    return {
        "chat": chat.name,
        "variant": variant,
        "target": target,
        "budget_tokens": scored["budget_tokens"],
        "text_tokens": scored["text_tokens"],
        "seen_tokens": scored["seen_tokens"],
        "savings": scored["savings"],
        "pages": scored["pages"],
        "pages_in_context": scored["pages_in_context"],
        "modes": scored["modes"],
        "eligible": scored["eligible"],
        "exact": surv["exact"]["survived"],
        "loose": surv["loose"]["survived"],
        "exact_in_context": surv["exact_in_context"]["survived"],
        "loose_in_context": surv["loose_in_context"]["survived"],
        "identifiers_total": scored["identifiers"]["total"],
        "identifiers_exact": scored["identifiers"]["exact_with_verbatim"],
        "identifiers_share": scored["identifiers"]["share_with_verbatim"],
        "fidelity": scored["fidelity"],
        "evidence": scored["evidence"],
        "agent": agent,
        "seconds": round(seconds, 1),
        "misses": scored["misses"],
    }


def pooled(rows: list[dict], variant: str, target: float) -> dict:
    mine = [r for r in rows if r["variant"] == variant and r["target"] == target]
    text, seen = sum(r["text_tokens"] for r in mine), sum(r["seen_tokens"] for r in mine)
    out = {"variant": variant, "target": target, "chats": [r["chat"] for r in mine],
           "savings": round(text / seen, 2) if seen else None}  # fmt: skip
    for key in ("eligible", "exact", "loose", "exact_in_context", "loose_in_context", "pages",
                "pages_in_context", "identifiers_total", "identifiers_exact"):  # fmt: skip
        out[key] = sum(r[key] for r in mine)
    modes: dict[str, int] = {}
    for r in mine:
        for m, n in r["modes"].items():
            modes[m] = modes.get(m, 0) + n
    out["modes"] = modes
    out["sharpened"] = sum(r["agent"]["sharpened"] for r in mine)
    out["recalls"] = sum(r["agent"]["recalls"] for r in mine)
    return out


def pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.1f}%)" if d else "-"


def print_row(r: dict, name: str) -> None:
    modes = " ".join(f"{m}:{n}" for m, n in sorted(r["modes"].items()))
    print(
        f"{name:<8} {r['variant']:<17} {r['target']:>4g}x {r['savings']:>6.2f}x {r['pages_in_context']:>3}/{r['pages']:<3} "
        f"{modes:<22} {pct(r['exact'], r['eligible']):>15} {pct(r['loose'], r['eligible']):>15} "
        f"{pct(r['exact_in_context'], r['eligible']):>15} {pct(r['identifiers_exact'], r['identifiers_total']):>15}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("chats", nargs="+", help="LoCoMo chat files (or folders of them)")
    parser.add_argument(
        "--targets", default="10", help="savings targets, comma list (budget = text ÷ target)"
    )
    parser.add_argument(
        "--variants",
        default="plain,salient,rehearse,salient+rehearse",
        help=f"comma list of {', '.join(VARIANTS)}",
    )
    parser.add_argument("--backend", default="cpu", help="OCR backend that reads pages back")
    parser.add_argument("--out", type=Path, help="write JSON here")
    parser.add_argument("--limit-turns", type=int, help="replay only the first N turns (smoke runs)")
    parser.add_argument(
        "--paging-only",
        action="store_true",
        help="no OCR: plain against salient aging, reporting where each question's evidence ends up",
    )
    parser.add_argument("--progress", action="store_true", help="progress bars on stderr")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}")
    chats = [c.limit(args.limit_turns) for c in load_many(args.chats)]
    backend = get_backend(args.backend)
    cfg = BenchConfig(backend=backend, progress=args.progress)
    targets = [float(x) for x in args.targets.split(",")]
    if args.paging_only:
        variants = [v for v in variants if "rehearse" not in v]  # the agent's search needs OCR
        runs = paging_only(chats, targets, variants, cfg, backend)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            doc = {"schema": "optimem.forgetting_policy.paging/1", "backend": backend.name,
                   "note": "no OCR ran: pages typeset at this backend's density, priced by its positions",
                   "runs": runs}  # fmt: skip
            args.out.write_text(json.dumps(doc, indent=2))
        return
    load_before = os.getloadavg()
    started = time.time()
    rows = []
    print(
        f"{'chat':<8} {'variant':<17} {'tgt':>5} {'saved':>7} {'ctx':>7} {'modes':<22} "
        f"{'exact':>15} {'loose':>15} {'exact in ctx':>15} {'ids exact':>15}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            for chat in chats:
                tokens = [count_tokens(t.content, DEFAULT_ENCODING) for t in chat.turns]
                budget = max(1, int(sum(tokens) / target))
                for variant in variants:
                    t0 = time.perf_counter()
                    db = Path(tmp) / f"{chat.name}-{target:g}-{variant}.db"
                    rep, agent = replay(chat, variant, budget, cfg, backend, db)
                    evidence = evidence_sharpness(rep, chat)
                    scored = score_run(rep, chat, target, budget, cfg, backend, tokens)
                    scored["evidence"] = evidence
                    rows.append(row(chat, variant, target, scored, agent, time.perf_counter() - t0))
                    print_row(rows[-1], chat.name)
    pools = [pooled(rows, v, t) for t in sorted({r["target"] for r in rows}) for v in variants]
    for p in pools:
        print_row(p, "all")
    machine = (
        f"{os.cpu_count()} vCPUs ({platform.processor() or platform.machine()}), Python {platform.python_version()}; "
        f"load average {load_before[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end"
    )
    print(f"decoder: {backend.name}; machine: {machine}; {time.time() - started:.0f} s wall", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "schema": "optimem.forgetting_policy/1",
            "decoder": backend.name,
            "machine": machine,
            "wall_seconds": round(time.time() - started),
            "agent": "rehearsal variants: at each LoCoMo session boundary, search with the next "
            "session's first turn (pages decoded first) and recall the top hit by id",
            "variants": variants,
            "pooled": pools,
            "runs": rows,
        }
        args.out.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
