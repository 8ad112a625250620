"""What a compress costs, and proof that it made the same pages: two checkouts side by side.

Every turn an agent (or `optimem bench`) adds is followed by `compress()`, so its cost is paid
once per turn: it was about half of the strict benchmark's wall time. This replays chats turn by
turn through the public API (`replay`: add the turn, compress; no page is read) under the
settings the benchmark uses:

- `demo-budget`: the embedded chat, the demo's 2,000-token budget, pages made at the default
  creation mode and aged by the budget policy (a reopened last page every turn);
- `demo-large`, `demo-small`: the embedded chat, pages at Large or Small, never aged (the
  fixed-mode runs: a page waits for more turns until it is full);
- `locomo-budget`: a LoCoMo conversation, a 4,000-token budget, pages at Small.

For each it records the wall seconds of every compress and a digest of what the replay left:
every page's mode, turns, tokens, layout text and PNG bytes, and the tokens the model sees after
each turn. Equal digests mean the same pages, pixel for pixel, so the same reads.

`--baseline TREE` runs the same children under another checkout of optimem (`git worktree add
/tmp/base <commit>`), interleaved case by case, `--repeat N` times each in fresh processes.

    python benchmarks/compress_speed.py --baseline /tmp/base --out benchmarks/results/compress_speed.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "30.json"

#: case → (chat, policy: budget tokens or None for no aging, creation mode or None for the default)
CASES: dict[str, tuple[str, int | None, str | None]] = {
    "demo-budget": ("default", 2000, None),
    "demo-large": ("default", None, "large"),
    "demo-small": ("default", None, "small"),
    "locomo-budget": (str(LOCOMO), 4000, "small"),
}


def child(case: str) -> dict:
    """One replay in this process (whatever optimem PYTHONPATH gives); its timings and digest."""
    from optimem.aging.policies import BudgetPolicy, NoAging
    from optimem.backends import get_backend
    from optimem.bench import datasets
    from optimem.bench.config import BenchConfig
    from optimem.bench.replay import ReplaySpec, replay
    from optimem.modes import Mode

    source, budget, mode = CASES[case]
    chat = datasets.load_default() if source == "default" else datasets.load(source)
    cfg = BenchConfig(progress=False)
    creation = Mode.parse(mode) if mode else cfg.creation_mode
    policy = BudgetPolicy(budget) if budget else NoAging()
    with tempfile.TemporaryDirectory() as folder:
        t0 = time.perf_counter()
        rep = replay(
            chat, ReplaySpec(case, policy, creation), cfg=cfg, backend=get_backend("cpu"), folder=Path(folder)
        )
        wall = time.perf_counter() - t0
        s = rep.session
        digest = hashlib.sha256(json.dumps(rep.series).encode())
        pages = s.pages()
        for p in pages:
            fields = [p.mode.value, p.creation_mode.value, list(p.turn_ids), p.text_tokens, p.chars, p.canvas]
            digest.update(json.dumps(fields).encode())
            digest.update((s.page_source(p.id) or "").encode())
            digest.update(s.page_png(p.id))
        rep.memory.close()
    times = sorted(rep.compress_seconds)
    return {
        "case": case,
        "turns": len(chat.turns),
        "pages": len(pages),
        "modes": sorted({p.mode.value for p in pages}),
        "replay_s": round(wall, 3),
        "compress_s_total": round(sum(times), 3),
        "compress_ms_median": round(1000 * statistics.median(times), 2),
        "compress_ms_p90": round(1000 * times[int(0.9 * (len(times) - 1))], 2),
        "digest": digest.hexdigest()[:16],
    }


def run_child(tree: Path, case: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", case]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode:
        raise SystemExit(f"{case} under {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    ap.add_argument("--baseline", type=Path, help="another checkout of optimem to run side by side")
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    ap.add_argument("--repeat", type=int, default=2, help="fresh processes per case and tree")
    ap.add_argument("--out", type=Path, help="write the JSON here")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    from optimem.bench.machine import describe

    trees = {"now": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown case {', '.join(unknown)}; choose from {', '.join(CASES)}")
    runs: dict[str, dict[str, list[dict]]] = {c: {t: [] for t in trees} for c in cases}
    for case in cases:
        for _ in range(args.repeat):
            for name, tree in trees.items():  # interleaved: a slow minute hits both trees
                runs[case][name].append(run_child(tree, case))
    rows = []
    for case in cases:
        row: dict = {"case": case}
        for name in trees:
            rs = runs[case][name]
            row[name] = {
                "replay_s": statistics.median(r["replay_s"] for r in rs),
                "compress_ms_median": statistics.median(r["compress_ms_median"] for r in rs),
                "compress_s_total": statistics.median(r["compress_s_total"] for r in rs),
                "pages": rs[0]["pages"],
                "digests": sorted({r["digest"] for r in rs}),
                "runs": rs,
            }
        row["turns"] = runs[case]["now"][0]["turns"]
        if "baseline" in trees:
            row["same_pages"] = row["now"]["digests"] == row["baseline"]["digests"]
            row["ratio"] = round(row["now"]["replay_s"] / row["baseline"]["replay_s"], 3)
        rows.append(row)
    doc = {
        "benchmark": "compress_speed",
        "machine": describe(),
        "load_average_end": round(os.getloadavg()[0], 2),
        "decoder": "none (no page is read); cpu backend's calibration for typesetting",
        "trees": {name: {"path": str(tree), "commit": commit(tree)} for name, tree in trees.items()},
        "repeat": args.repeat,
        "rows": rows,
    }
    head = (
        "| case | turns | pages | "
        + " | ".join(f"{t} replay s | {t} ms/compress" for t in trees)
        + (" | now ÷ baseline | same pages |" if "baseline" in trees else " |")
    )
    print(
        f"# {describe()}; medians of {args.repeat} fresh processes; "
        + ", ".join(f"{t} = {doc['trees'][t]['commit']}" for t in trees)
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for row in rows:
        cells = [row["case"], row["turns"], row["now"]["pages"]]
        for t in trees:
            cells += [f"{row[t]['replay_s']:.2f}", f"{row[t]['compress_ms_median']:.1f}"]
        if "baseline" in trees:
            cells += [f"{row['ratio']:.2f}", "yes" if row["same_pages"] else "**no**"]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
