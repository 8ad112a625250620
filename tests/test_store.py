import sqlite3

import pytest

from optimem import PageNotFound, SchemaError, SessionNotFound, StoreError
from optimem.migrations import SCHEMA_VERSION
from optimem.store import Store


def test_migrations_are_recorded_and_idempotent(db_path):
    store = Store(db_path)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    store = Store(db_path)  # reopening applies nothing twice
    rows = store.db.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert [tuple(r) for r in rows] == [(1, "m001_initial")]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused(db_path):
    Store(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute("INSERT INTO schema_migrations VALUES (99, 'm099_future', 'now')")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="upgrade optimem"):
        Store(db_path)


def test_missing_things_raise(db_path):
    store = Store(db_path)
    with pytest.raises(SessionNotFound):
        store.require_session("nope")
    with pytest.raises(PageNotFound, match="no page 7"):
        store.page("nope", 7)


def test_transaction_rolls_back_on_error(db_path):
    store = Store(db_path)
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("INSERT INTO sessions (id, created_at) VALUES ('s', 'now')")
        raise RuntimeError("boom")
    assert store.session_ids() == []


def test_urls_and_memory(tmp_path):
    Store(f"sqlite:///{tmp_path / 'x.db'}").close()
    assert (tmp_path / "x.db").exists()
    mem = Store(":memory:")
    mem.ensure_session("a")
    assert mem.session_ids() == ["a"]
    with pytest.raises(StoreError, match="unsupported database URL"):
        Store("postgresql://host/db")
