"""Fixtures for the REST tests: real `optimem serve` processes on 127.0.0.1, real HTTP clients."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.auth import KeysFile

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_REAL_CONNECT = socket.socket.connect  # taken at import, before any fixture patches them
_REAL_CREATE = socket.create_connection


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """These tests talk HTTP to servers they start: loopback is allowed, nothing else."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `optimem serve` process on a free loopback port."""

    def __init__(self, db: Path, *args: str, backend: str = "test-double", env: dict[str, str] | None = None):
        self.db = db
        self.args = ["--db", str(db), "--backend", backend, *args]
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith("OPTIMEM_") or k == "OPTIMEM_CACHE_DIR"
            },
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.log = db.with_suffix(".log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "optimem.cli",
            "serve",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
        ]
        out = self.log.open("ab")
        self.proc = subprocess.Popen(cmd + self.args, cwd=ROOT, env=self.env, stdout=out, stderr=out)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not become ready:\n{self.log.read_text()}")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (uvicorn's graceful shutdown) and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> dict[str, str]:
    """A keys file with tenants acme and globex; maps 'acme'/'globex'/'file' to keys and path."""
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    keys_file = KeysFile(path)
    return {"acme": keys_file.add("acme")[1], "globex": keys_file.add("globex")[1], "file": str(path)}


@pytest.fixture(scope="session")
def server(tmp_path_factory, keys) -> Iterator[Server]:
    """A test-double server with auth (acme, globex) and a generous rate limit."""
    db = tmp_path_factory.mktemp("srv") / "memory.db"
    srv = Server(db, "--keys", keys["file"], "--rate-per-minute", "100000", "--decode", "now").start()
    yield srv
    srv.stop()


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def words_turns(n: int, words: int = 40, tag: str = "") -> list[dict]:
    """Deterministic prose turns with an identifier each."""
    vocab = [
        "migration",
        "replica",
        "database",
        "cutover",
        "schedule",
        "budget",
        "weekend",
        "ticket",
        "owner",
        "latency",
        "index",
    ]
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Turn {i}{tag}: "
            + " ".join(vocab[(i * 7 + j) % len(vocab)] for j in range(words))
            + f" OPS-{4800 + i}.",
        }
        for i in range(n)
    ]
