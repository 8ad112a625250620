"""Load on the REST service over loopback: requests/s and p50/p99 latency per operation.

    python benchmarks/rest_load.py --out out/rest_load.json [--backend cpu] [--clients 1,10,50] [--workers 1,2]

For each worker count it starts `optimem serve` (SQLite file, `decode=lazy`, no auth) on a
free loopback port; for each client count it runs asyncio + httpx clients, each on its own
session: add-turn (one turn per request), compress (a 12-turn batch, then compress with
flush), context, recall uncached (the first read of each page: real OCR) and recall cached
(the same pages again). The clients run on the same machine as the server, so they take
CPU from it. Prints a table and writes JSON. The test-double backend is refused: speed
figures come from a real OCR engine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from optimem.server.process import Server

PROSE = (
    "The database cutover for the billing cluster is scheduled for Saturday morning; ticket OPS-4821 "
    "tracks it and Priya from the platform team owns the rollback plan and the replica checks. "
)


def summarise(op: str, samples: list[float], errors: int, wall: float) -> dict:
    ms = sorted(x * 1000 for x in samples)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))] if ms else 0.0
    return {
        "op": op,
        "requests": len(ms),
        "errors": errors,
        "rps": round(len(ms) / wall, 1) if wall else 0.0,
        "p50_ms": round(statistics.median(ms), 1) if ms else 0.0,
        "p99_ms": round(p99, 1),
    }


async def run_phase(clients: list[httpx.AsyncClient], work) -> tuple[list[float], int, float]:
    """Run `work(client_index, client)` for every client at once; each yields request coroutines."""
    samples: list[float] = []
    errors = 0

    async def one(i: int, c: httpx.AsyncClient) -> None:
        nonlocal errors
        async for make in work(i, c):
            t0 = time.perf_counter()
            r = await make()
            samples.append(time.perf_counter() - t0)
            if r.status_code >= 400:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i, c) for i, c in enumerate(clients)))
    return samples, errors, time.perf_counter() - t0


async def bench(url: str, n_clients: int, tag: str, turns_per_client: int, rounds: int) -> list[dict]:
    limits = httpx.Limits(max_connections=1)
    clients = [httpx.AsyncClient(base_url=url, timeout=600, limits=limits) for _ in range(n_clients)]
    sid = [f"{tag}-c{i}" for i in range(n_clients)]
    pages: dict[int, list[int]] = {}
    rows = []
    try:

        async def add_turn(i, c):
            for k in range(turns_per_client):
                body = {"role": "user" if k % 2 == 0 else "assistant", "content": f"{k}. {PROSE}"}
                yield lambda body=body: c.post(f"/v1/sessions/{sid[i]}/turns", json=body)

        async def compress(i, c):
            for r in range(rounds):
                batch = [{"role": "user", "content": f"round {r} turn {k}. {PROSE * 2}"} for k in range(12)]
                await c.post(f"/v1/sessions/{sid[i]}/turns", json={"turns": batch})  # not timed

                async def go():
                    resp = await c.post("/v1/compress", json={"session": sid[i], "flush": True})
                    pages.setdefault(i, []).extend(resp.json().get("created", []))
                    return resp

                yield go

        async def context(i, c):
            for _ in range(rounds * 3):
                yield lambda: c.get(f"/v1/sessions/{sid[i]}/context", params={"budget_tokens": 4000})

        async def recall(i, c):
            for pid in pages.get(i, []):
                yield lambda pid=pid: c.post("/v1/recall", json={"session": sid[i], "page_ids": [pid]})

        async def recall_again(i, c):
            for _ in range(3):
                for pid in pages.get(i, []):
                    yield lambda pid=pid: c.post("/v1/recall", json={"session": sid[i], "page_ids": [pid]})

        for op, work in (
            ("add-turn", add_turn),
            ("compress", compress),
            ("context", context),
            ("recall uncached", recall),
            ("recall cached", recall_again),
        ):
            samples, errors, wall = await run_phase(clients, work)
            rows.append(summarise(op, samples, errors, wall))
    finally:
        for c in clients:
            await c.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="cpu")
    parser.add_argument("--clients", default="1,10,50")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--turns", type=int, default=20, help="add-turn requests per client")
    parser.add_argument("--rounds", type=int, default=2, help="compress rounds per client (a page each)")
    parser.add_argument("--out", type=Path, default=Path("rest_load.json"))
    args = parser.parse_args()
    if args.backend == "test-double":
        parser.error("the test-double backend reads no pixels: it must not produce a speed figure")
    results = []
    for workers in [int(x) for x in args.workers.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            srv = Server(
                Path(tmp) / "load.db",
                *("--workers", str(workers), "--decode", "lazy", "--rate-per-minute", "0"),
                backend=args.backend,
            ).start(timeout=120)
            url = srv.url
            try:
                for n in [int(x) for x in args.clients.split(",")]:
                    rows = asyncio.run(bench(url, n, f"w{workers}n{n}", args.turns, args.rounds))
                    for row in rows:
                        results.append({"workers": workers, "clients": n, **row})
                        print(
                            f"workers {workers} clients {n:>3} {row['op']:<16} {row['requests']:>5} req "
                            f"{row['rps']:>8.1f}/s  p50 {row['p50_ms']:>8.1f} ms  p99 {row['p99_ms']:>8.1f} ms"
                            f"  errors {row['errors']}",
                            flush=True,
                        )
            finally:
                srv.stop(timeout=120)
    machine = f"{os.cpu_count()} vCPUs, {platform.processor() or platform.machine()}, {platform.system()}"
    report = {
        "schema": "optimem.rest_load/1",
        "backend": args.backend,
        "machine": machine,
        "python": platform.python_version(),
        "turns_per_client": args.turns,
        "rounds": args.rounds,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print()
    print("| workers | clients | operation | requests | req/s | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['workers']} | {r['clients']} | {r['op']} | {r['requests']} | {r['rps']} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
        )
    print(f"\nwrote {args.out} ({args.backend} backend, {machine})")


if __name__ == "__main__":
    main()
