"""Shared fixtures: every test gets its own data folder and no network."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

#: Modules whose every test is marked slow and whose import is itself slow: schemathesis builds
#: the fuzz cases when the module is imported (~9 s), so a run that deselects slow tests skips
#: the module instead of importing it to deselect every test.
ALL_SLOW = {Path(__file__).parent / "server" / "test_fuzz.py"}


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path in ALL_SLOW and config.getoption("markexpr", "").strip() == "not slow":
        return True
    return None


def pytest_configure(config):
    """hypothesis (under schemathesis) keeps caches in ./.hypothesis: keep them out of the checkout."""
    try:
        from hypothesis import configuration
    except ImportError:  # the dev extra is not installed
        return
    configuration.set_hypothesis_home_dir(tempfile.mkdtemp(prefix="optimem-hypothesis-"))


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch, request):
    # token encodings are unpacked once per test run, not per test
    monkeypatch.setenv("OPTIMEM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.setenv("OPTIMEM_DB", str(tmp_path_factory.mktemp("db") / "optimem.db"))
    if "allow_network" not in request.keywords:

        def guard(*args, **kwargs):
            raise RuntimeError("network access in a unit test")

        monkeypatch.setattr(socket.socket, "connect", guard)
        monkeypatch.setattr(socket, "create_connection", guard)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "memory.db"


#: Words of the deterministic chat turns the plumbing tests page (REST tests use the first 11).
VOCAB = [
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
    "table",
    "backup",
    "restore",
    "airflow",
    "dag",
    "warehouse",
    "cluster",
    "region",
    "invoice",
    "review",
    "birthday",
    "dinner",
    "flight",
    "hotel",
    "colleague",
    "meeting",
    "Thursday",
    "Friday",
    "morning",
    "evening",
]


def chat_turns(n: int = 30, words: int = 60) -> list[tuple[str, str]]:
    """Deterministic prose turns with identifiers, for plumbing tests."""
    import random

    rng = random.Random(7)
    out = []
    for i in range(n):
        body = " ".join(rng.choice(VOCAB) for _ in range(words))
        out.append(("user" if i % 2 == 0 else "assistant", f"Turn {i}: {body} OPS-{4800 + i}."))
    return out


def wait_ready(proc) -> bool:
    """True once an `optimem worker` process says it is registered (other lines may come first)."""
    return any("ready" in proc.stderr.readline() for _ in range(50))


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the whole run, in a temporary folder (stopped at the end)."""
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    from optimem.store.pg_local import LocalPostgres, find_pg_bin

    if find_pg_bin() is None:
        pytest.skip("PostgreSQL server binaries are missing (apt-get install postgresql)")
    server = LocalPostgres().start()
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server):
    """The URL of a fresh, empty database on the test server."""
    return postgres_server.create_database()


@pytest.fixture
def postgresql_store(postgres_url):
    from optimem.store import open_store

    return open_store(postgres_url)
