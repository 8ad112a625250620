"""Scale-out as processes on one PostgreSQL: two replica processes with concurrent clients, two
`optimem worker` processes (real `cpu` OCR), one worker SIGKILLed mid-batch, PostgreSQL
restarted mid-run. Nothing acknowledged is lost, no turn is paged twice, tenants stay apart,
and every page ends up decoded once."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from .conftest import wait_ready

pytest.importorskip("psycopg", reason="the postgres extra is not installed")

# One replica: CLIENTS threads, each its own session in tenant t0/t1/t2, adding short turns in
# chunks and compressing after each; a failed call (PostgreSQL restarting) is retried, and only
# what a call returned counts as acknowledged. At the end it recalls every page.
_REPLICA = r"""
import json, sys, threading, time
from optimem import OpticalMemory, OptimemError
from optimem.modes import NoAging

url, name, clients, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
mem = OpticalMemory(url, backend="cpu", decode="queue", policy=NoAging(), keep_recent_turns=1)
acked, errors, lock = {}, [], threading.Lock()

def retry(fn):
    for _ in range(200):
        try:
            return fn()
        except OptimemError as exc:  # the database is restarting: a real client retries too
            with lock:
                errors.append(type(exc).__name__)
            time.sleep(0.1)
    raise RuntimeError("gave up")

def client(k):
    s = mem.session(f"t{k % 3}/{name}-c{k}")
    for c in range(chunks):
        turns = [{"role": "user" if i % 2 == 0 else "assistant",
                  "content": f"{name} client {k} chunk {c} line {i}: ticket OPS-{k}{c}{i} for t{k % 3}.",
                  "external_id": f"{name}-{k}-{c}-{i}"} for i in range(3)]
        ids = retry(lambda: s.add_turns(turns, skip_existing=True))
        with lock:
            acked[s.id] = acked.get(s.id, []) + [t["content"] for t in turns]
        retry(lambda: s.compress(flush=c == chunks - 1))
    for page in retry(s.pages):
        retry(lambda: s.recall_page(page.id))

threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
for t in threads:
    t.start()
print("started", flush=True)
for t in threads:
    t.join()
print(json.dumps({"acked": acked, "errors": len(errors)}), flush=True)
mem.close()
"""


def _spawn(args, **kw):
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_replicas_and_workers_survive_a_killed_worker_and_a_postgres_restart(postgres_server, postgres_url):
    from optimem import OpticalMemory
    from optimem.store.pgqueue import DecodeQueue

    mem = OpticalMemory(postgres_url, backend="cpu", decode="lazy")
    queue = DecodeQueue(mem.store)
    worker = [
        "-m",
        "optimem.cli",
        "worker",
        "--db",
        postgres_url,
        *["--backend", "cpu", "--batch", "4", "--lease", "3"],
    ]
    workers = [_spawn(worker) for _ in range(2)]
    for w in workers:
        assert wait_ready(w)
    replicas = [_spawn(["-c", _REPLICA, postgres_url, f"r{i}", "25", "2"]) for i in range(2)]
    try:
        for r in replicas:
            assert r.stdout.readline().strip() == "started"
        # SIGKILL the first worker while it holds a claimed batch
        victim = workers[0]
        deadline = time.monotonic() + 60
        held: list[int] = []
        while not held and time.monotonic() < deadline:
            held = [
                r["id"]
                for r in mem.store._q(
                    "SELECT q.id FROM pgqueuer q JOIN optimem_workers w ON q.queue_manager_id = w.id"
                    " WHERE w.pid = %s AND q.status = 'picked'",
                    (victim.pid,),
                )
            ]
            time.sleep(0.05)
        assert held, "the first worker never claimed a batch"
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        postgres_server.restart()  # mid-run: replicas and the surviving worker reconnect
        outs = [r.communicate(timeout=240) for r in replicas]
    finally:
        for p in [*replicas, workers[0]]:
            if p.poll() is None:
                p.kill()
    try:
        _check(mem, queue, replicas, outs, held)
        workers[1].send_signal(signal.SIGTERM)  # the survivor drains and leaves cleanly
        assert workers[1].wait(timeout=60) == 0
    finally:
        if workers[1].poll() is None:
            workers[1].kill()
        mem.close()


def _check(mem, queue, replicas, outs, held):
    for r, (_, err) in zip(replicas, outs, strict=True):
        assert r.returncode == 0, err[-3000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    acked = {sid: texts for res in results for sid, texts in res["acked"].items()}
    assert len(acked) == 50  # 2 replicas × 25 concurrent clients
    # nothing acknowledged is lost, nothing is duplicated, and tenants stay apart
    for sid, texts in acked.items():
        stored = [t.content for t in mem.session(sid).turns()]
        assert sorted(stored) == sorted(texts), sid
        assert all(f"for {sid.split('/')[0]}." in t for t in stored)
    for tenant in ("t0", "t1", "t2"):
        assert all(s.startswith(f"{tenant}/") for s in mem.sessions(prefix=f"{tenant}/"))
    assert sum(len(mem.sessions(prefix=f"t{i}/")) for i in range(3)) == 50
    assert mem.store.integrity_problems() == []  # no turn on two pages, no page without turns
    # every page was decoded, the killed worker's batch by the survivor, each (page, mode) once
    fingerprint = queue.live_workers("cpu")[0]["fingerprint"]
    pages = [p for sid in acked for p in mem.store.pages(sid)]
    assert pages and all(mem.store.get_decoded(p.id, p.mode, fingerprint) for p in pages)
    done = mem.store._q(
        "SELECT job_id FROM pgqueuer_log WHERE status = 'successful' AND job_id = ANY(%s)", (held,)
    )
    assert {r["job_id"] for r in done} == set(held)
