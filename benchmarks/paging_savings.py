"""Savings the pager reaches at a target, without OCR: pages, positions and context tokens only.

    python benchmarks/paging_savings.py ../shared/data/locomo --targets 10,20 [--out out/paging.json]

Each chat is replayed turn by turn (compress after every turn) under a budget of its text
tokens ÷ target, as `optimem bench --target-savings` does, with decoding left lazy: how many
pages the pager cuts, their modes and what the context costs do not depend on the decoder, so
this runs in seconds where the strict benchmark spends minutes reading pages. Pages are typeset
at the `cpu` backend's calibrated density and priced by its positions (DeepSeek-OCR v1's).
Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from optimem import OpticalMemory
from optimem.bench.datasets import load_many
from optimem.bench.machine import describe
from optimem.tokens import count_tokens


def replay(chat, target: float, db: Path, backend: str) -> dict:
    text = sum(count_tokens(t.content) for t in chat.turns)
    budget = max(1, int(text / target))
    t0 = time.perf_counter()
    with OpticalMemory(db, backend=backend, decode="lazy", policy=f"budget:{budget}") as mem:
        s = mem.session(chat.name)
        for turn in chat.turns:
            s.add_turn(turn.role, turn.content, name=turn.name)
            s.compress()
        stats = s.stats()
        pages = s.pages()
        context = s.context(budget_tokens=budget)
    return {
        "chat": chat.name,
        "target": target,
        "budget": budget,
        "text_tokens": text,
        "pages": len(pages),
        "modes": {m: sum(p.mode.value == m for p in pages) for m in sorted({p.mode.value for p in pages})},
        "context_tokens": stats.context_tokens,
        "savings": round(stats.savings, 2),
        "pages_in_context": len(pages) - len(context.omitted_page_ids),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("chats", nargs="+", help="LoCoMo or plain chat files, or folders of them")
    parser.add_argument("--targets", default="10,20", help="savings targets, comma list")
    parser.add_argument("--backend", default="cpu", help="backend whose density and positions apply")
    parser.add_argument("--out", type=Path, help="write JSON here")
    args = parser.parse_args()
    chats = load_many(args.chats)
    rows = []
    print(
        f"{'chat':<14} {'target':>6} {'budget':>6} {'pages':>5} {'in ctx':>6} {'context':>7} {'savings':>7}  modes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for target in [float(x) for x in args.targets.split(",")]:
            for i, chat in enumerate(chats):
                row = replay(chat, target, Path(tmp) / f"{i}-{target}.db", args.backend)
                rows.append(row)
                print(
                    f"{row['chat']:<14} {target:>5.0f}x {row['budget']:>6} {row['pages']:>5} "
                    f"{row['pages_in_context']:>6} {row['context_tokens']:>7} {row['savings']:>6.2f}x  {row['modes']}",
                    flush=True,
                )
    machine = describe()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "schema": "optimem.paging_savings/1",
            "backend": args.backend,
            "machine": machine,
            "runs": rows,
        }
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out} ({machine}; no OCR ran: pages and positions only)")


if __name__ == "__main__":
    main()
