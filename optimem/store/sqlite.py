"""What is SQLite's own in the store: opening the file (WAL, pragmas), ``BEGIN IMMEDIATE`` for
writes, the FTS5 trigram search. The store itself is `optimem.store.sql.SqlStore`.

Python's sqlite3 module would begin transactions behind SQLAlchemy's back and never before DDL;
the connection is put in autocommit instead and the store begins its own: reads run in
SQLite's implicit per-statement transactions, a write transaction is a ``BEGIN IMMEDIATE``, so
a process killed at any instant leaves either the old state or the new one.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, create_engine, event, text
from sqlalchemy.pool import QueuePool

from ..errors import StoreError
from .sql import SqlStore

_WRITE = "optimem_write"


def resolve(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """(sqlite target, is_uri) for a path, a sqlite:/// URL or ':memory:'."""
    target = os.fspath(path)
    if target == ":memory:":
        return f"file:optimem-{uuid.uuid4().hex}?mode=memory&cache=shared", True
    if target.startswith("sqlite:///"):
        target = target[len("sqlite:///") :]
    elif "://" in target:
        scheme = target.split("://", 1)[0]
        raise StoreError(f"unsupported database URL scheme {scheme!r}: use a file path or sqlite:///path")
    Path(target).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    return str(Path(target).expanduser()), False


def make_engine(url: str, *, timeout: float = 60.0) -> tuple[Engine, str]:
    target, is_uri = resolve(url)
    engine = create_engine(
        "sqlite+pysqlite://",
        creator=lambda: _connect(target, is_uri, timeout),
        poolclass=QueuePool,
        # one kept connection per thread that writes at once (a service's thread pool runs ~40):
        # a connection opened past the pool is closed on return, and opening one (the file,
        # WAL, four pragmas) cost a REST add-turn at 50 clients half its throughput
        pool_size=64,
        max_overflow=-1,  # a thread never waits for a connection
        json_serializer=lambda obj: json.dumps(obj, ensure_ascii=False),
    )
    if is_uri:  # an in-memory database lives as long as one connection to it: the engine's
        keepalive = _connect(target, is_uri, timeout)
        event.listen(engine, "engine_disposed", lambda _engine: keepalive.close())
    event.listen(engine, "begin", _begin)
    return engine, url


def _connect(target: str, is_uri: bool, timeout: float) -> Any:
    import sqlite3

    try:
        db = sqlite3.connect(
            target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=is_uri
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open database {target!r}: {exc}") from exc
    if not is_uri:
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return db


def _begin(conn: Connection) -> None:
    """SQLAlchemy begins a transaction: a write one takes the write lock at once."""
    if conn.get_execution_options().get(_WRITE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


#: a connection per thread, as SQLite likes it
keep_readers = True

#: BEGIN IMMEDIATE already holds the database's one write lock
row_locks = False


def read_options() -> dict[str, Any]:
    return {}


def write_options() -> dict[str, Any]:
    return {_WRITE: True}


def search(conn: Connection, session_id: str, terms: Sequence[str], limit: int) -> list[int]:
    """FTS5 trigram match of any term as a substring, ranked by bm25."""
    query = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    rows = conn.execute(
        text(
            "SELECT page_id FROM page_index WHERE page_index MATCH :query AND session_id = :session"
            " ORDER BY bm25(page_index) LIMIT :limit"
        ),
        {"query": query, "session": session_id, "limit": limit},
    )
    return [int(r[0]) for r in rows]


def bytewise(column: ColumnElement[str]) -> ColumnElement[str]:
    return column  # SQLite compares text by bytes already


def problems(conn: Connection) -> list[str]:
    return [r[0] for r in conn.exec_driver_sql("PRAGMA integrity_check") if r[0] != "ok"]


class SQLiteStore(SqlStore):
    """The embedded store: a SQLite file (or ``":memory:"``). Safe to share between threads and
    processes."""

    def __init__(self, path: str | os.PathLike[str] = "optimem.db", *, timeout: float = 60.0) -> None:
        self.path = os.fspath(path)
        url = self.path if self.path == ":memory:" or "://" in self.path else f"sqlite:///{self.path}"
        super().__init__(url, timeout=timeout)
