"""Where a benchmark replay's time goes when no page is read: adding turns and compressing.

`optimem bench` replays each chat turn by turn (the budget run, each fixed mode, each strict
target), and on the five LoCoMo conversations those replays were about half of the strict
benchmark's wall time. This profiles one replay (a LoCoMo conversation under the budget policy,
pages typeset at Small, the `cpu` backend's calibration, no page decoded) with cProfile and
writes the table, sorted by cumulative time, with the machine and commit on top.

    python benchmarks/replay_profile.py --out benchmarks/results/replay_profile.txt
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import tempfile
import time
from pathlib import Path

from optimem.aging.policies import BudgetPolicy
from optimem.backends import get_backend
from optimem.bench import datasets
from optimem.bench.config import BenchConfig
from optimem.bench.machine import describe
from optimem.bench.replay import ReplaySpec, replay
from optimem.modes import Mode

ROOT = Path(__file__).resolve().parent.parent
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "30.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chat", type=Path, default=LOCOMO)
    ap.add_argument("--budget", type=int, default=4000)
    ap.add_argument("--rows", type=int, default=45)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    chat = datasets.load(str(args.chat))
    backend = get_backend("cpu")
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        profile.enable()
        spec = ReplaySpec("budget", BudgetPolicy(args.budget), Mode.SMALL)
        rep = replay(chat, spec, cfg=BenchConfig(progress=False), backend=backend, folder=Path(folder))
        profile.disable()
        seconds = time.perf_counter() - t0
        pages = len(rep.session.pages())
        rep.memory.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    buf = io.StringIO()
    pstats.Stats(profile, stream=buf).sort_stats("cumulative").print_stats(args.rows)
    head = (
        f"# replay of {args.chat.name}: {len(chat.turns)} turns, budget {args.budget}, {pages} Small pages, "
        f"cpu calibration, no page read\n# {seconds:.1f} s wall under cProfile ({seconds / len(chat.turns) * 1000:.0f} "
        f"ms a turn); commit {commit.stdout.strip() or '?'}; {describe()}; load average "
        f"{os.getloadavg()[0]:.1f} at the end\n"
    )
    print(head, end="")
    print(buf.getvalue()[:4000])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(head + buf.getvalue())


if __name__ == "__main__":
    main()
