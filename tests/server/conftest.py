"""Fixtures for the REST tests: real `optimem serve` processes on 127.0.0.1, real HTTP clients."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from optimem.server.auth import KeysFile
from optimem.server.process import Server
from tests.conftest import VOCAB

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
    srv = Server(
        db,
        "--keys",
        keys["file"],
        "--rate-per-minute",
        "100000",
        "--decode",
        "now",
        env={"OPTIMEM_METRICS_KEY": METRICS_KEY},
    ).start()
    yield srv
    srv.stop()


#: The metrics key of the `server` fixture (GET /metrics needs it where the service has keys).
METRICS_KEY = "metrics-key-of-the-tests-0123456789"


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def words_turns(n: int, words: int = 40, tag: str = "") -> list[dict]:
    """Deterministic prose turns with an identifier each."""
    vocab = VOCAB[:11]  # the words these tests were written with
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Turn {i}{tag}: "
            + " ".join(vocab[(i * 7 + j) % len(vocab)] for j in range(words))
            + f" OPS-{4800 + i}.",
        }
        for i in range(n)
    ]
