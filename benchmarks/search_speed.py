"""What correction's search costs, and proof that it finds the same readings: two checkouts.

Proofreading tries combinations of a misread line's word variants, cheapest first, until one
passes the line's check (`optimem.reading.correction._search`, up to 300 per line and lead).
Most of its time goes to lines that never pass: on the demo's budget run 982 of 1,145 searches
ran to the limit. This records every search a real read makes (the embedded chat replayed
under the demo's 2,000-token budget, every page read by the `cpu` decoder, so mostly pages
aged to Tiny), then replays those same searches, and only them, under each checkout:

- seconds for all the searches, median of `--repeat` fresh processes per tree, interleaved;
- for every search, the choice that passed (or none) and how many were tried; the report
  counts the searches where the trees found a different choice (a different reading) and
  where they only tried a different number of combinations.

`--baseline TREE` is another checkout of optimem (`git worktree add /tmp/base <commit>`).

    python benchmarks/search_speed.py --baseline /tmp/base --out benchmarks/results/search_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)
from trees import commit  # benchmarks/trees.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def record(path: Path, chat_spec: str, budget: int) -> None:
    """Replay `chat_spec` under a budget, read every page, and pickle each search made."""
    from optimem.aging.policies import BudgetPolicy
    from optimem.backends import get_backend
    from optimem.bench import datasets
    from optimem.bench.config import BenchConfig
    from optimem.bench.replay import ReplaySpec, replay
    from optimem.reading import correction

    calls: list[tuple] = []
    search = correction._search

    def recorded(options, check, limit):
        plain = [[(v.words, v.surface, v.cost, v.keep_case) for v in o] for o in options]
        calls.append((plain, check, limit))
        return search(options, check, limit)

    correction._search = recorded
    chat = datasets.load_default() if chat_spec == "default" else datasets.load(chat_spec)
    cfg = BenchConfig(progress=False)
    with tempfile.TemporaryDirectory() as folder:
        spec = ReplaySpec("search", BudgetPolicy(budget), cfg.creation_mode)
        rep = replay(chat, spec, cfg=cfg, backend=get_backend("cpu"), folder=Path(folder))
        pages = rep.session.pages()
        modes = sorted(p.mode.value for p in pages)
        for page in pages:
            rep.session.recall_page(page.id)
        rep.memory.close()
    path.write_bytes(pickle.dumps({"chat": chat.name, "pages": len(pages), "modes": modes, "calls": calls}))


def replay_searches(path: Path) -> dict:
    """Every recorded search through this tree's `_search` (whatever PYTHONPATH gives)."""
    from optimem.reading.correction import Variant, _search

    recorded = pickle.loads(path.read_bytes())
    calls = [
        ([[Variant(*v) for v in o] for o in options], check, limit)
        for options, check, limit in recorded["calls"]
    ]
    t0 = time.perf_counter()
    results = [_search(options, check, limit) for options, check, limit in calls]
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "results": [[list(found) if found else None, tried] for found, tried in results],
    }


def run_child(tree: Path, *args: str) -> dict | None:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} under {tree} failed:\n{done.stderr[-3000:]}")
    out = done.stdout.strip().splitlines()
    return json.loads(out[-1]) if out else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--replay", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--chat", default="default", help="chat to replay and read: 'default' or a file")
    ap.add_argument("--budget", type=int, default=2000, help="token budget of the replay (the demo's)")
    ap.add_argument("--baseline", type=Path, help="another checkout of optimem to run side by side")
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per tree")
    ap.add_argument("--out", type=Path, help="write the JSON here")
    args = ap.parse_args()
    if args.record:
        record(args.record, args.chat, args.budget)
        return
    if args.replay:
        print(json.dumps(replay_searches(args.replay)))
        return
    from optimem.bench.machine import describe

    trees = {"now": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    with tempfile.TemporaryDirectory() as folder:
        calls_file = Path(folder) / "searches.pickle"
        print(f"recording the searches of reading {args.chat} (budget {args.budget}) ...", file=sys.stderr)
        run_child(ROOT, "--record", str(calls_file), "--chat", args.chat, "--budget", str(args.budget))
        recorded = pickle.loads(calls_file.read_bytes())
        runs: dict[str, list[dict]] = {t: [] for t in trees}
        for _ in range(args.repeat):
            for name, tree in trees.items():  # interleaved: a slow minute hits both trees
                runs[name].append(run_child(tree, "--replay", str(calls_file)))
    rows = {
        name: {
            "commit": commit(tree),
            "seconds_median": round(statistics.median(r["seconds"] for r in runs[name]), 3),
            "seconds": [round(r["seconds"], 3) for r in runs[name]],
            "tries": sum(tried for _, tried in runs[name][0]["results"]),
            "passed": sum(found is not None for found, _ in runs[name][0]["results"]),
            "same_every_run": all(r["results"] == runs[name][0]["results"] for r in runs[name]),
        }
        for name, tree in trees.items()
    }
    doc: dict = {
        "benchmark": "search_speed",
        "machine": describe(),
        "load_average_end": round(os.getloadavg()[0], 2),
        "decoder": "cpu+proofread (the reads that made the searches); the searches replayed alone",
        "chat": recorded["chat"],
        "budget": args.budget,
        "pages": recorded["pages"],
        "page_modes": recorded["modes"],
        "searches": len(recorded["calls"]),
        "repeat": args.repeat,
        "trees": rows,
    }
    print(
        f"# {describe()}; {len(recorded['calls'])} searches recorded reading {recorded['pages']} pages of "
        f"{recorded['chat']} (budget {args.budget}); medians of {args.repeat} fresh processes per tree"
    )
    print("| tree | commit | seconds | tries | searches that passed |")
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['commit']} | {row['seconds_median']:.2f} | {row['tries']:,} | {row['passed']} |"
        )
    if "baseline" in trees:
        now, base = runs["now"][0]["results"], runs["baseline"][0]["results"]
        doc["ratio"] = round(rows["now"]["seconds_median"] / rows["baseline"]["seconds_median"], 3)
        doc["different_choice"] = sum(a[0] != b[0] for a, b in zip(now, base, strict=True))
        doc["different_tries_only"] = sum(
            a[0] == b[0] and a[1] != b[1] for a, b in zip(now, base, strict=True)
        )
        print(
            f"now ÷ baseline {doc['ratio']:.2f}; searches that found a different choice: "
            f"{doc['different_choice']}; that found the same one after a different number of tries: "
            f"{doc['different_tries_only']}"
        )
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
