"""Render speed per mode, and recall latency of cached against uncached pages.

    python benchmarks/render_recall.py --backend tesseract --out out/render_recall.json

Render: the embedded default chat typeset at each mode's canvas with the backend's
calibrated density (median ms per page over repeats, fonts warm). Recall: pages made with
`decode="now"` are read back from the cache; the same pages in a fresh memory with
`decode="lazy"` pay the OCR on first recall. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete

from optimem import OpticalMemory
from optimem.aging.policies import NoAging
from optimem.bench.datasets import load_default
from optimem.bench.machine import cores
from optimem.modes import LADDER
from optimem.pages.calibration import render_options
from optimem.pages.typeset import TurnText, paginate
from optimem.store.schema import decoded


def bench_render(backend: str, repeats: int) -> list[dict]:
    chat = load_default()
    turns = [TurnText(i, t.role, t.content) for i, t in enumerate(chat.turns)]
    rows = []
    for mode in LADDER:
        options = render_options(backend, mode)
        paginate(turns[:4], options)  # warm fonts and the word-bitmap cache
        times, n_pages, chars = [], 0, 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            pages = paginate(turns, options)
            times.append((time.perf_counter() - t0) * 1000 / len(pages))
            n_pages, chars = len(pages), sum(len(p.text) for p in pages)
        rows.append(
            {
                "mode": mode.value,
                "canvas": mode.canvas,
                "font_px": options.font_px,
                "pages": n_pages,
                "chars_per_page": round(chars / n_pages),
                "ms_per_page_median": round(statistics.median(times), 2),
            }
        )
    return rows


def bench_recall(backend: str, pages: int) -> dict:
    chat = load_default()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "m.db"
        mem = OpticalMemory(db, backend=backend, decode="now", policy=NoAging(), creation_mode="small")
        s = mem.session("bench")
        s.add_turns([(t.role, t.content) for t in chat.turns[: 12 * pages]])
        s.compress(flush=True)
        ids = [p.id for p in s.pages()][:pages]
        cached = []
        for _ in range(5):
            for pid in ids:
                t0 = time.perf_counter()
                r = s.recall_page(pid)
                cached.append((time.perf_counter() - t0) * 1000)
                assert r.cached
        mem.close()
        lazy = OpticalMemory(db, backend=backend, decode="lazy", policy=NoAging())
        with lazy.store.transaction() as conn:
            conn.execute(delete(decoded))
        s = lazy.session("bench")
        uncached = []
        for pid in ids:
            t0 = time.perf_counter()
            r = s.recall_page(pid)
            uncached.append((time.perf_counter() - t0) * 1000)
            assert not r.cached
        lazy.close()
    return {
        "backend": backend,
        "mode": "small",
        "pages": len(ids),
        "cached_ms_median": round(statistics.median(cached), 2),
        "uncached_ms_median": round(statistics.median(uncached), 1),
        "ratio": round(statistics.median(uncached) / statistics.median(cached), 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="tesseract")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--recall-pages", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("out/render_recall.json"))
    args = ap.parse_args()
    render = bench_render(args.backend, args.repeats)
    recall = bench_recall(args.backend, args.recall_pages)
    print(f"render (density calibrated for {args.backend}; {platform.processor() or platform.machine()})")
    print(f"{'mode':<7} {'canvas':>6} {'font px':>7} {'pages':>5} {'chars/page':>10} {'ms/page':>8}")
    for r in render:
        print(
            f"{r['mode']:<7} {r['canvas']:>6} {r['font_px']:>7} {r['pages']:>5} "
            f"{r['chars_per_page']:>10} {r['ms_per_page_median']:>8}"
        )
    print(
        f"\nrecall ({recall['backend']}, {recall['pages']} Small pages): cached "
        f"{recall['cached_ms_median']} ms, uncached {recall['uncached_ms_median']} ms "
        f"({recall['ratio']}x)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"machine": platform.node(), "cores": cores(), "render": render, "recall": recall}, indent=2
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
