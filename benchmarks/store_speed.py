"""The store's share of paging and recall: time spent inside store methods while a 200-turn chat
is compressed and every page is recalled from the decode cache.

    python benchmarks/store_speed.py --engine sqlite --out out/store_speed.json

Runs the public API only (`OpticalMemory`, `compress`, `recall_page`), so the same file times
any version of optimem (put the version's checkout first on PYTHONPATH). Times are CPU
seconds of the process (`time.process_time`), not wall time. Every public store
method is wrapped in a timer; a store method called from inside another counts once, in the
outer one (`transaction` itself is not timed: it holds paging's rendering too). The backend is
the test double (no OCR), decoding at compress (``decode="now"``), no aging: what is left is
typesetting, the test double's reading, and the store. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optimem import OpticalMemory

try:
    from optimem.aging.policies import NoAging
except ImportError:  # optimem 0.1, timed for comparison
    from optimem.modes import NoAging  # type: ignore[attr-defined,no-redef]

RECALL_ROUNDS = 10
#: CPU seconds of this process: on a machine shared with other jobs, waiting for a core is not
#: the store's cost (everything runs in this thread: decode="now", no background work).
CLOCK = time.process_time

WORDS = [
    "the",
    "deploy",
    "of",
    "build",
    "failed",
    "on",
    "replica",
    "at",
    "ticket",
    "retry",
    "with",
    "lock",
    "timeout",
    "invoice",
    "paid",
    "send",
    "her",
    "link",
    "rotate",
    "key",
    "before",
    "Friday",
    "owner",
    "scheduled",
    "thread",
    "short",
    "from",
    "now",
    "on",
    "migration",
]


def chat(n: int) -> list[dict]:
    rng = random.Random(19)
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Turn {i}: " + " ".join(rng.choice(WORDS) for _ in range(60)) + f" OPS-{4800 + i}.",
        }
        for i in range(n)
    ]


class Timed:
    """Wraps a store's public methods; `seconds[name]` and `calls[name]` add up outer calls."""

    def __init__(self, store: Any) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.depth = 0
        for name in dir(store):
            if name.startswith("_") or name in ("transaction", "close", "pooled"):
                continue
            if isinstance(getattr(type(store), name, None), property):
                continue
            attr = getattr(store, name, None)
            if not callable(attr) or isinstance(attr, type):
                continue
            setattr(store, name, self.wrap(name, attr))

    def wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kw: Any) -> Any:
            if self.depth:
                return method(*args, **kw)
            self.depth += 1
            t0 = CLOCK()
            try:
                return method(*args, **kw)
            finally:
                self.seconds[name] += CLOCK() - t0
                self.calls[name] += 1
                self.depth -= 1

        return timed


def run(url: str, turns: int) -> dict:
    mem = OpticalMemory(url, backend="test-double", policy=NoAging(), keep_recent_turns=4, decode="now")
    timer = Timed(mem.store)
    s = mem.session("bench/store")
    rows = chat(turns)
    t0 = CLOCK()
    for i in range(0, len(rows), 10):  # a conversation arrives a few turns at a time
        s.add_turns(rows[i : i + 10])
        s.compress()
    t_compress = CLOCK() - t0
    store_compress = sum(timer.seconds.values())
    pages = s.pages()
    t0 = CLOCK()
    for _ in range(RECALL_ROUNDS):
        for page in pages:
            s.recall_page(page.id)
    t_recall = CLOCK() - t0
    store_recall = sum(timer.seconds.values()) - store_compress
    mem.close()
    return {
        "pages": len(pages),
        "compress_s": round(t_compress, 3),
        "compress_store_s": round(store_compress, 3),
        "recall_s": round(t_recall, 3),
        "recall_store_s": round(store_recall, 3),
        "recalls": RECALL_ROUNDS * len(pages),
        "by_method_ms": {k: round(v * 1000, 1) for k, v in sorted(timer.seconds.items())},
        "calls": dict(sorted(timer.calls.items())),
    }


def machine() -> str:
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or platform.machine(),
    )  # fmt: skip
    return f"{os.cpu_count()} vCPUs, {model}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="database URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    runs = []
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            url = args.url or str(Path(tmp) / f"bench{r}.db")
            runs.append(run(url, args.turns))
    keys = ("compress_s", "compress_store_s", "recall_s", "recall_store_s")
    summary = {
        "label": args.label,
        "optimem": __import__("optimem").__file__,
        "machine": machine(),
        "turns": args.turns,
        "pages": runs[0]["pages"],
        "recalls": runs[0]["recalls"],
        **{f"median_{k}": statistics.median(x[k] for x in runs) for k in keys},
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
