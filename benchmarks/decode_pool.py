"""Background reading on threads against worker processes: pages per second, same text.

Builds one SQLite memory of LoCoMo prose pages (`--pages`, typeset by the memory itself at its
default creation mode), then reads every page uncached in the background under each
configuration, each in a fresh process on a fresh copy of the database:

- `threads:1`, `threads:2`: `OpticalMemory(decode_workers=N)`, the default pool;
- `processes:2`: `decode_pool="processes"`, a worker process per core (spawned on first use,
  each loading the engines and the spelling index: that start is inside the time).

It reports the wall time from `resume_decoding()` to `wait()` returning (the process is warmed
up first, as `optimem serve` is), pages per second, and what came back: lines whose check
passes and a hash of every page's text, which must be equal across the configurations (the same
reading code runs in each; a pool that changed a text would show here).

    python benchmarks/decode_pool.py --out benchmarks/results/decode_pool.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "42.json"
CONFIGS = ("threads:1", "threads:2", "processes:2")


def build(db: str, pages: int, chat: Path) -> list[int]:
    from optimem import OpticalMemory
    from optimem.bench.datasets import load

    mem = OpticalMemory(db, backend="cpu", decode="lazy", policy="none")
    s = mem.session("prose")
    turns = load(str(chat)).turns
    s.add_turns([(t.role, t.content) for t in turns[: pages * 30]])
    s.compress(flush=True)
    ids = [p.id for p in s.pages()][:pages]
    mem.close()
    return ids


def child(db: str, config: str, page_ids: list[int]) -> dict:
    """One configuration in this process: warm up, read every unread page, report."""
    from optimem import OpticalMemory

    pool, workers = config.split(":")
    mem = OpticalMemory(
        db, backend="cpu", decode="background", policy="none", decode_workers=int(workers), decode_pool=pool
    )
    s = mem.session("prose")
    warm_s = mem.warm_up()
    keep = set(page_ids)  # pages outside the measured set are not read
    t0 = time.perf_counter()
    unread = [pid for pid in mem.decoder.unread(["prose"]) if pid in keep]
    mem.decoder.schedule(unread, force_background=True)
    finished = mem.wait(timeout=1800)
    wall = time.perf_counter() - t0
    exact = checked = 0
    texts = {}
    for pid in page_ids:
        r = s.cached_recall(pid)
        assert r is not None, f"page {pid} was not read"
        exact += r.lines_exact
        checked += r.lines_checked
        texts[pid] = hashlib.sha256(r.text.encode()).hexdigest()[:16]
    mem.close()
    return {
        "config": config,
        "pages": len(unread),
        "finished": finished,
        "warm_up_s": round(warm_s, 2),
        "wall_s": round(wall, 2),
        "pages_per_s": round(len(unread) / wall, 3),
        "lines_exact": exact,
        "lines_checked": checked,
        "texts": texts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1, help="fresh processes per configuration (medians)")
    ap.add_argument("--chat", type=Path, default=LOCOMO)
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        db, config, ids = args.child
        print(json.dumps(child(db, config, json.loads(ids))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base.db")
        ids = build(base, args.pages, args.chat)
        runs: dict[str, list[dict]] = {}
        for r in range(args.repeat):
            for config in args.configs.split(","):  # interleaved: a slow spell hits every one
                db = os.path.join(tmp, f"{config.replace(':', '_')}_{r}.db")
                shutil.copy(base, db)
                out = subprocess.run(
                    [sys.executable, __file__, "--child", db, config, json.dumps(ids)],
                    capture_output=True, text=True, check=True, cwd=ROOT,
                )  # fmt: skip
                got = json.loads(out.stdout.strip().splitlines()[-1])
                got["load_average_after"] = round(os.getloadavg()[0], 2)  # other work on the machine
                runs.setdefault(config, []).append(got)
    rows = []
    reference = next(iter(runs.values()))[0]["texts"]
    for config, got in runs.items():
        wall = statistics.median(g["wall_s"] for g in got)
        rows.append(
            {
                "config": config,
                "pages": got[0]["pages"],
                "wall_s_median": wall,
                "pages_per_s": round(got[0]["pages"] / wall, 3),
                "lines_exact": got[0]["lines_exact"],
                "lines_checked": got[0]["lines_checked"],
                "same_text_as_first": all(g["texts"] == reference for g in got),
                "runs": got,
            }
        )
    base_wall = rows[0]["wall_s_median"]
    machine = f"{os.cpu_count()} vCPUs, {_cpu_name()}"
    print(f"decoder: cpu (tesseract + rapidocr, reading aids on); machine: {machine}; "
          f"{args.pages} distinct LoCoMo pages ({args.chat.name}); medians of {args.repeat}")  # fmt: skip
    print(
        f"{'config':<13} {'wall s':>8} {'pages/s':>8} {'vs first':>9} {'lines exact':>12} {'same text':>10}"
    )
    for row in rows:
        print(
            f"{row['config']:<13} {row['wall_s_median']:>8.1f} {row['pages_per_s']:>8.3f} "
            f"{base_wall / row['wall_s_median']:>8.2f}x {row['lines_exact']:>5}/{row['lines_checked']:<6} "
            f"{'yes' if row['same_text_as_first'] else 'NO':>10}"
        )
    if args.out:
        doc = {
            "benchmark": "decode_pool",
            "decoder": "cpu",
            "machine": machine,
            "python": platform.python_version(),
            "pages": args.pages,
            "chat": args.chat.name,
            "repeat": args.repeat,
            "rows": rows,
        }
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
