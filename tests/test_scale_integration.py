"""Scale-out as processes on one PostgreSQL: two `optimem serve --decode queue` replicas, 50
concurrent HTTP clients in three tenants spread over both, two `optimem worker` processes (real
`cpu` OCR), one worker SIGKILLed mid-batch, PostgreSQL restarted mid-run. Nothing acknowledged
is lost, no turn is paged twice, tenants stay apart, and every page ends up decoded."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from .conftest import wait_ready

pytest.importorskip("psycopg", reason="the postgres extra is not installed")
httpx = pytest.importorskip("httpx", reason="the server extra is not installed")

CLIENTS = 50

from optimem.server.process import ROOT, Server, child_env  # noqa: E402 (after the extras check)
from tests.server.conftest import _loopback_only as _loopback_only  # noqa: E402 (network: loopback only)


def _spawn(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "optimem.cli", *args], cwd=ROOT, env=child_env(), text=True, **kw
    )


class Client(threading.Thread):
    """One agent: its own session, requests alternating between the replicas, retried on 5xx or
    a dropped connection (as a client behind a load balancer would); counts what was acknowledged."""

    def __init__(self, k: int, bases: list[str], key: str) -> None:
        super().__init__()
        self.k, self.bases, self.session = k, bases, f"c{k}"
        self.tenant = f"t{k % 3}"
        self.http = httpx.Client(timeout=300, headers={"Authorization": f"Bearer {key}"})
        self.acked: list[str] = []
        self.recalled: list[dict] = []
        self.retries = 0
        self.error: BaseException | None = None

    def call(self, method: str, path: str, **kw) -> httpx.Response:
        for attempt in range(600):
            try:
                r = self.http.request(method, self.bases[(self.k + attempt) % 2] + path, **kw)
                if r.status_code < 500:
                    return r
            except httpx.TransportError:
                pass
            self.retries += 1
            time.sleep(0.1)
        raise RuntimeError(f"{method} {path} kept failing")

    def run(self) -> None:
        try:
            for chunk in range(2):
                turns = [
                    {
                        "role": "user" if i % 2 == 0 else "assistant",
                        "content": f"client {self.k} chunk {chunk} line {i}: ticket OPS-{self.k}{chunk}{i} for {self.tenant}.",
                        "external_id": f"{self.k}-{chunk}-{i}",
                    }
                    for i in range(3)
                ]
                r = self.call(
                    "POST", f"/v1/sessions/{self.session}/turns", json={"turns": turns, "skip_existing": True}
                )
                assert r.status_code == 201, r.text
                self.acked += [t["content"] for t in turns]
                r = self.call("POST", "/v1/compress", json={"session": self.session, "flush": chunk == 1})
                assert r.status_code == 200, r.text
            pages = self.call("GET", f"/v1/sessions/{self.session}/pages").json()["pages"]
            r = self.call(
                "POST", "/v1/recall", json={"session": self.session, "page_ids": [p["id"] for p in pages]}
            )
            assert r.status_code == 200, r.text
            self.recalled = r.json()["pages"]
            others = self.call("GET", "/v1/sessions").json()["sessions"]
            assert self.session in others and all(s.startswith("c") for s in others)
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.http.close()


@pytest.mark.slow
def test_replicas_and_workers_survive_a_killed_worker_and_a_postgres_restart(
    postgres_server, postgres_url, tmp_path
):
    from optimem import OpticalMemory
    from optimem.server.auth import KeysFile
    from optimem.workers.queue import DecodeQueue

    keys_file = KeysFile(tmp_path / "keys.json")
    keys = {t: keys_file.add(t)[1] for t in ("t0", "t1", "t2")}
    mem = OpticalMemory(postgres_url, backend="cpu", decode="lazy")
    queue = DecodeQueue(mem.store)
    procs: list[subprocess.Popen] = []
    try:
        worker_args = ["worker", "--db", postgres_url, "--backend", "cpu", "--batch", "4", "--lease", "3"]
        workers = [_spawn(worker_args, stderr=subprocess.PIPE) for _ in range(2)]
        procs += workers
        for w in workers:
            assert wait_ready(w)
        replicas = [
            Server(
                postgres_url,
                *("--decode", "queue", "--keys", str(tmp_path / "keys.json")),
                backend="cpu",
                log=tmp_path / f"replica{i}.log",
            ).start(timeout=90)
            for i in range(2)
        ]
        procs += [r.proc for r in replicas if r.proc is not None]
        bases = [r.url for r in replicas]
        clients = [Client(k, bases, keys[f"t{k % 3}"]) for k in range(CLIENTS)]
        for c in clients:
            c.start()
        # SIGKILL the first worker while it holds a claimed batch
        victim = workers[0]
        held: list[int] = []
        deadline = time.monotonic() + 120
        while not held and time.monotonic() < deadline:
            with mem.store.pooled() as conn:
                held = [
                    r["id"]
                    for r in conn.execute(
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
        for c in clients:
            c.join(timeout=300)
        assert [c.error for c in clients if c.error] == []
        print(
            f"client retries (5xx or dropped connections while PostgreSQL restarted): {sum(c.retries for c in clients)}"
        )

        # nothing acknowledged is lost or stored twice, and tenants stay apart
        for c in clients:
            stored = [t.content for t in mem.session(f"{c.tenant}/{c.session}").turns()]
            assert sorted(stored) == sorted(c.acked), c.session
            assert all(f"for {c.tenant}." in t for t in stored)
        for tenant in ("t0", "t1", "t2"):
            mine = {f"{tenant}/{c.session}" for c in clients if c.tenant == tenant}
            assert set(mem.sessions(prefix=f"{tenant}/")) == mine
        assert mem.store.integrity_problems() == []  # no turn on two pages, no page without turns
        # every page was read back with its ticket, and decoded; the killed worker's jobs by the other
        assert all(c.recalled and all("OPS-" in p["text"] for p in c.recalled) for c in clients)
        fingerprint = queue.live_workers("cpu")[0]["fingerprint"]
        pages = [p for c in clients for p in mem.store.pages(f"{c.tenant}/{c.session}")]
        assert all(mem.store.get_decoded(p.id, p.mode, fingerprint) for p in pages)
        with mem.store.pooled() as conn:
            done = conn.execute(
                "SELECT job_id FROM pgqueuer_log WHERE status = 'successful' AND job_id = ANY(%s)", (held,)
            ).fetchall()
        assert {r["job_id"] for r in done} == set(held)
        for replica in replicas:  # graceful stop: queued jobs are durable, nothing to wait for
            assert replica.stop(timeout=60) in (0, -signal.SIGTERM)  # as tests/server accept
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(timeout=60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        mem.close()
