"""Shared fixtures: every test gets its own data folder and no network."""

from __future__ import annotations

import atexit
import gc
import hashlib
import socket
import tempfile
from pathlib import Path

import pytest

#: Modules whose every test is marked slow and whose collection is itself slow: schemathesis
#: builds the fuzz cases when the module is collected (~5 s), so a run that deselects slow tests skips
#: the module instead of importing it to deselect every test.
ALL_SLOW = {Path(__file__).parent / "server" / "test_fuzz.py"}


def _shared_cache() -> Path:
    """Where every test run on this machine keeps the spelling index (~2 s to build) and the
    unpacked token encodings. Both are written atomically (a temporary name, then a rename),
    so runs, even concurrent ones, share them safely; the folder is named by a digest of the
    code that writes them, so a change to it starts from an empty cache. Tests of building
    point OPTIMEM_CACHE_DIR elsewhere themselves."""
    code = Path(__file__).resolve().parents[1] / "optimem"
    digest = hashlib.sha256()
    for source in (code / "aids" / "speller.py", code / "tokens.py"):
        digest.update(source.read_bytes())
    return Path(tempfile.gettempdir()) / f"optimem-test-cache-{digest.hexdigest()[:12]}"


#: OPTIMEM_CACHE_DIR of every test and of the servers and workers they start.
SHARED_CACHE = _shared_cache()


def _fast(config: pytest.Config) -> bool:
    return config.getoption("markexpr", "").strip() == "not slow"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path in ALL_SLOW and _fast(config):
        return True
    return None


def pytest_configure(config):
    """Load schemathesis's pytest plugin where the fuzz tests run; keep hypothesis's caches out
    of the checkout, in the shared cache.

    pyproject's addopts turn off plugin autoloading: pytest rewrites the asserts of every
    module of an autoloaded plugin's distribution (hypothesis, schemathesis, langsmith: ~2,000
    files), and with no bytecode cache that was 13 s of the fast subset's 85 s.
    """
    if not _fast(config) and not config.pluginmanager.hasplugin("schemathesis"):
        config.pluginmanager.import_plugin("schemathesis.pytest.plugin")
    try:
        from hypothesis import configuration
    except ImportError:  # the dev extra is not installed
        return
    # its unicode tables (~2 s to build for the fuzz cases) are kept there, written atomically
    configuration.set_hypothesis_home_dir(SHARED_CACHE / "hypothesis")


def pytest_collection_finish(session):
    """Keep what importing the tests made (torch, transformers, LangChain, the app: objects
    that live all run anyway) out of the garbage collector's full passes, which walked them
    each time: 6.2 s of full passes in a fast-subset run, 4.9 s with this. What the tests
    themselves make is collected as before."""
    gc.freeze()


def pytest_unconfigure(config):
    """Skip the garbage collections of the interpreter's own exit: after every test and
    pytest's own final collections, they walked the whole heap of a run (engines, models,
    caches) again for ~3 s and could report nothing. Objects are still freed by their counts."""
    atexit.register(gc.freeze)


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch, request):
    # the spelling index and token encodings are built once per machine, not per test or run
    monkeypatch.setenv("OPTIMEM_CACHE_DIR", str(SHARED_CACHE))
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
