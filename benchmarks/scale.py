"""Scale-out on one PostgreSQL: decode workers, compress replicas, and what the queue costs.

    python benchmarks/scale.py --out out/scale.json            # starts a throwaway PostgreSQL
    python benchmarks/scale.py --db postgresql://user@host/db  # or uses yours (creates databases)

1. Pages decoded per second by 1, 2 and 4 `optimem worker` processes (`cpu` backend) on the
   same Small pages of the embedded chat, against decoding them in-process. The machine's
   cores bound this: the count is printed and written.
2. Compress throughput with 1 and 2 replica processes (`decode="queue"`, budget policy, the
   embedded chat added five turns at a time, each followed by `compress()`), the same total work.
3. The queue's own cost per page, without OCR: enqueue, claim and finish a job.
Prints tables and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from optimem import OpticalMemory
from optimem.aging.policies import NoAging
from optimem.bench.datasets import load_default
from optimem.store.pg_local import LocalPostgres, create_database
from optimem.workers.queue import DecodeQueue, WorkerQueue


def cores() -> int:
    return len(os.sched_getaffinity(0))


def new_db(base_url: str, name: str) -> str:
    return create_database(base_url, name, replace=True)


def chat_turns() -> list[tuple[str, str]]:
    return [(t.role, t.content) for t in load_default().turns]


def make_pages(url: str, backend: str, sessions: int) -> list[int]:
    """Small pages of the embedded chat, `sessions` times over, none decoded yet."""
    mem = OpticalMemory(url, backend=backend, decode="lazy", policy=NoAging())
    ids: list[int] = []
    for i in range(sessions):
        s = mem.session(f"bench/s{i}")
        s.add_turns(chat_turns())
        ids += s.compress(flush=True).created
    mem.close()
    return ids


# -- 1. workers ----------------------------------------------------------------------------


def in_process(url: str, backend: str, page_ids: list[int]) -> float:
    mem = OpticalMemory(url, backend=backend, decode="lazy", policy=NoAging())
    mem.backend.fingerprint()  # load the engine outside the timing, as a worker does
    t0 = time.perf_counter()
    mem.decoder.decode_here(page_ids)
    seconds = time.perf_counter() - t0
    mem.close()
    return seconds


def with_workers(url: str, backend: str, page_ids: list[int], n: int, batch: int) -> dict:
    mem = OpticalMemory(url, backend=backend, decode="queue", policy=NoAging())
    queue = mem.decoder.queue
    assert queue is not None
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optimem.cli",
                "worker",
                "--db",
                url,
                "--backend",
                backend,
                "--batch",
                str(batch),
            ],
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        while len(queue.live_workers(backend)) < n:  # engines loaded, registered
            time.sleep(0.1)
        t0 = time.perf_counter()
        mem.decoder.schedule(page_ids)
        while queue.queued(backend):
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        fp = queue.live_workers(backend)[0]["fingerprint"]
        pages = [mem.store.page_by_id(pid) for pid in page_ids]
        decoded = sum(mem.store.get_decoded(p.id, p.mode, fp) is not None for p in pages)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        mem.close()
    return {"workers": n, "batch": batch, "pages": len(page_ids), "decoded": decoded, "seconds": seconds}


def bench_workers(base: str, backend: str, sessions: int, counts: list[int], batch: int) -> dict:
    url = new_db(base, "scale_inproc")
    ids = make_pages(url, backend, sessions)
    inproc = in_process(url, backend, ids)
    rows = []
    for n in counts:
        url = new_db(base, f"scale_w{n}")
        ids = make_pages(url, backend, sessions)
        row = with_workers(url, backend, ids, n, batch)
        row["pages_per_s"] = row["pages"] / row["seconds"]
        rows.append(row)
        print(f"  {n} workers: {row['pages']} pages in {row['seconds']:.1f} s", flush=True)
    return {
        "backend": backend,
        "pages": len(ids),
        "in_process": {"seconds": inproc, "pages_per_s": len(ids) / inproc},
        "workers": rows,
    }


# -- 2. replicas ---------------------------------------------------------------------------


def _replica(url: str, session_ids: list[str], out: multiprocessing.Queue, go: Any) -> None:
    mem = OpticalMemory(url, backend="cpu", decode="queue", policy="budget:2000")
    turns = chat_turns()
    out.put("ready")  # imported and connected: the clock starts when every replica is
    go.wait()
    calls = 0
    for sid in session_ids:
        s = mem.session(sid)
        for i in range(0, len(turns), 5):
            s.add_turns(turns[i : i + 5])
            s.compress()
            calls += 1
    out.put({"end": time.time(), "compress_calls": calls, "turns": len(turns) * len(session_ids)})
    mem.close()


def bench_replicas(base: str, sessions: int, counts: list[int]) -> list[dict]:
    rows = []
    for n in counts:
        url = new_db(base, f"scale_r{n}")
        DecodeQueue.for_store(OpticalMemory(url, decode="lazy").store)  # schema ready before the clock
        ids = [f"tenant{i % 2}/s{i}" for i in range(sessions)]
        ctx = multiprocessing.get_context("spawn")
        out: multiprocessing.Queue = ctx.Queue()
        go = ctx.Event()
        procs = [ctx.Process(target=_replica, args=(url, ids[k::n], out, go)) for k in range(n)]
        for p in procs:
            p.start()
        assert [out.get(timeout=300) for _ in procs] == ["ready"] * n
        start = time.time()
        go.set()
        results = [out.get(timeout=900) for _ in procs]
        for p in procs:
            p.join()
        turns = sum(r["turns"] for r in results)
        calls = sum(r["compress_calls"] for r in results)
        work = max(r["end"] for r in results) - start  # all replicas, first call to last
        mem = OpticalMemory(url, decode="lazy")
        problems = mem.store.integrity_problems()
        pages = sum(len(mem.session(s).pages()) for s in ids)
        mem.close()
        rows.append(
            {
                "replicas": n,
                "sessions": sessions,
                "turns": turns,
                "compress_calls": calls,
                "pages": pages,
                "seconds": work,
                "turns_per_s": turns / work,
                "compress_per_s": calls / work,
                "integrity_problems": len(problems),
            }
        )
        print(f"  {n} replicas: {calls} compress calls in {work:.1f} s", flush=True)
    return rows


# -- 3. queue overhead ---------------------------------------------------------------------


def bench_queue(base: str, jobs: int) -> dict:
    url = new_db(base, "scale_queue")
    mem = OpticalMemory(url, decode="queue", policy=NoAging())
    queue = mem.decoder.queue
    assert queue is not None
    pages = [(i, "small") for i in range(1, jobs + 1)]  # jobs only: no page is decoded here
    t0 = time.perf_counter()
    for p in pages:
        queue.enqueue([p], "bench")
    enqueue_ms = (time.perf_counter() - t0) * 1000 / jobs

    async def drain(batch: int) -> float:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            wq = WorkerQueue(conn, "bench", "bench", batch)
            t0 = time.perf_counter()
            n = 0
            while claimed := await wq.claim(lease_s=30):
                await wq.done(claimed)
                n += len(claimed)
            return (time.perf_counter() - t0) * 1000 / max(n, 1)

    claim1 = asyncio.run(drain(1))
    queue.enqueue(pages, "bench")
    claim8 = asyncio.run(drain(8))
    mem.close()
    return {
        "jobs": jobs,
        "enqueue_ms_per_page": enqueue_ms,
        "claim_and_finish_ms_per_page_batch1": claim1,
        "claim_and_finish_ms_per_page_batch8": claim8,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="postgresql:// URL of a server to use (default: start one)")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--sessions", type=int, default=1, help="copies of the embedded chat to decode")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--replica-sessions", type=int, default=4)
    ap.add_argument("--queue-jobs", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("out/scale.json"))
    args = ap.parse_args()
    server = None
    base = args.db
    if base is None:
        server = LocalPostgres().start()
        base = server.url()
    load_before = os.getloadavg()
    try:
        print(
            f"{cores()} cores ({platform.processor() or platform.machine()}), PostgreSQL on {base.split('@')[-1]}"
        )
        print("workers:", flush=True)
        workers = bench_workers(
            base, args.backend, args.sessions, [int(x) for x in args.workers.split(",")], args.batch
        )
        print("replicas:", flush=True)
        replicas = bench_replicas(base, args.replica_sessions, [1, 2])
        queue = bench_queue(base, args.queue_jobs)
    finally:
        if server is not None:
            server.cleanup()
    inp = workers["in_process"]
    print(
        f"\nload average (1 min): {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (other work on the cores)"
    )
    print(f"\ndecode, backend {workers['backend']}, {workers['pages']} Small pages, {cores()} cores")
    print(f"{'how':<22} {'seconds':>8} {'pages/s':>8}")
    print(f"{'in-process':<22} {inp['seconds']:>8.1f} {inp['pages_per_s']:>8.2f}")
    for r in workers["workers"]:
        label = f"{r['workers']} worker(s), batch {r['batch']}"
        print(f"{label:<22} {r['seconds']:>8.1f} {r['pages_per_s']:>8.2f}")
    print(f"\ncompress (decode='queue', budget 2000, 5 turns per call), {cores()} cores")
    print(
        f"{'replicas':>8} {'sessions':>8} {'calls':>6} {'pages':>6} {'seconds':>8} {'calls/s':>8} {'turns/s':>8}"
    )
    for r in replicas:
        print(
            f"{r['replicas']:>8} {r['sessions']:>8} {r['compress_calls']:>6} {r['pages']:>6} {r['seconds']:>8.1f} "
            f"{r['compress_per_s']:>8.2f} {r['turns_per_s']:>8.1f}"
        )
    print(
        f"\nqueue, per page: enqueue {queue['enqueue_ms_per_page']:.2f} ms, claim+finish "
        f"{queue['claim_and_finish_ms_per_page_batch1']:.2f} ms (batch 1) / "
        f"{queue['claim_and_finish_ms_per_page_batch8']:.2f} ms (batch 8)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": platform.node(),
        "cores": cores(),
        "load_average_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "python": sys.version.split()[0],
        "decode": workers,
        "compress": replicas,
        "queue": queue,
        "median_worker_pages_per_s": statistics.median(r["pages_per_s"] for r in workers["workers"]),
    }
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
