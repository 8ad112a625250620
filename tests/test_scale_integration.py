"""Scale-out as processes on one PostgreSQL: two `optimem serve --decode queue` replicas, 50
concurrent HTTP clients in three tenants spread over both, two `optimem worker` processes (real
`cpu` OCR), one worker SIGKILLed mid-batch, PostgreSQL restarted mid-run. Nothing acknowledged
is lost, no turn is paged twice, tenants stay apart, and every page ends up decoded."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import wait_ready

pytest.importorskip("psycopg", reason="the postgres extra is not installed")
httpx = pytest.importorskip("httpx", reason="the server extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
CLIENTS = 50
_REAL_CONNECT = socket.socket.connect  # taken at import, before the unit-test guard patches them
_REAL_CREATE = socket.create_connection
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """This test talks HTTP to replicas it starts: loopback is allowed, nothing else."""

    def connect(self, address, *args):
        if isinstance(address, tuple) and address[0] not in LOOPBACK:
            raise RuntimeError(f"network access to {address[0]} in a test")
        return _REAL_CONNECT(self, address, *args)

    def create_connection(address, *args, **kwargs):
        if address[0] not in LOOPBACK:
            raise RuntimeError(f"network access to {address[0]} in a test")
        return _REAL_CREATE(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "create_connection", create_connection)


def _env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("OPTIMEM_") or k == "OPTIMEM_CACHE_DIR"}
    return {**keep, "PYTHONPATH": str(ROOT)}


def _spawn(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "optimem.cli", *args], cwd=ROOT, env=_env(), text=True, **kw
    )


def _serve(url: str, keys: Path, log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["serve", "--port", str(port), "--db", url, "--backend", "cpu", "--decode", "queue"]
    proc = _spawn(
        [*args, "--keys", str(keys), "--log-level", "warning"], stdout=log.open("a"), stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"replica not ready:\n{log.read_text()}")


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


def test_replicas_and_workers_survive_a_killed_worker_and_a_postgres_restart(
    postgres_server, postgres_url, tmp_path
):
    from optimem import OpticalMemory
    from optimem.store.pgqueue import DecodeQueue
    from server.auth import KeysFile

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
            _serve(postgres_url, tmp_path / "keys.json", tmp_path / f"replica{i}.log") for i in range(2)
        ]
        procs += [p for p, _ in replicas]
        bases = [b for _, b in replicas]
        clients = [Client(k, bases, keys[f"t{k % 3}"]) for k in range(CLIENTS)]
        for c in clients:
            c.start()
        # SIGKILL the first worker while it holds a claimed batch
        victim = workers[0]
        held: list[int] = []
        deadline = time.monotonic() + 120
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
        done = mem.store._q(
            "SELECT job_id FROM pgqueuer_log WHERE status = 'successful' AND job_id = ANY(%s)", (held,)
        )
        assert {r["job_id"] for r in done} == set(held)
        for proc, _ in replicas:  # graceful stop: queued jobs are durable, nothing to wait for
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) in (0, -signal.SIGTERM)  # as tests/server accept
        workers[1].send_signal(signal.SIGTERM)
        assert workers[1].wait(timeout=60) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        mem.close()
