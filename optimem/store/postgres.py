"""What is PostgreSQL's own in the store: the psycopg 3 engine and its pool, the advisory lock
that serialises migrations between replicas, the pg_trgm search. The store itself is
`optimem.store.sql.SqlStore`; `PostgresStore` only opens it with pool settings.

Pooled connections are checked before use (``pool_pre_ping``), so a restarted PostgreSQL costs
the replicas no restart. Every row carries the tenant (the session id's prefix before its
first ``/``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from sqlalchemy import ColumnElement, Connection, Engine, create_engine, text

from ..errors import StoreError
from .base import tenant_of
from .sql import SqlStore

__all__ = ["PostgresStore", "one", "redact", "tenant_of"]

#: Key of the advisory lock that serialises migrations between replicas starting together.
MIGRATION_LOCK = 0x6F7074696D656D  # "optimem"


def one(cur: psycopg.Cursor[DictRow]) -> DictRow:
    """The one row a statement must return (for code on a raw psycopg connection)."""
    row = cur.fetchone()
    if row is None:  # pragma: no cover - aggregates and RETURNING always give a row
        raise StoreError("the database returned no row where one was expected")
    return row


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url.replace("postgresql+psycopg://", "postgresql://"))
    except psycopg.ProgrammingError:
        return "postgresql://…"
    host, db = info.get("host", ""), info.get("dbname", "")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', '')}/{db}"


def make_engine(
    url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0
) -> tuple[Engine, str]:
    scheme, rest = url.split("://", 1)
    engine = create_engine(
        f"postgresql+psycopg://{rest}" if "+" not in scheme else url,
        pool_size=max(min_size, max_size),
        max_overflow=0,
        pool_timeout=timeout,
        pool_pre_ping=True,
        connect_args={"connect_timeout": max(1, int(timeout))},
    )
    return engine, redact(url)


#: pooled connections are shared by all threads
keep_readers = False

#: a write transaction locks each session row it touches (SELECT … FOR UPDATE)
row_locks = True


def read_options() -> dict[str, Any]:
    return {"isolation_level": "AUTOCOMMIT"}


def write_options() -> dict[str, Any]:
    return {}


def lock_migrations(conn: Connection) -> None:
    """Hold the migration lock until the transaction ends (replicas starting together)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


def search(conn: Connection, session_id: str, terms: Sequence[str], limit: int) -> list[int]:
    """Pages holding a term as a substring (ILIKE) or a word close to one (pg_trgm word
    similarity, so OCR-garbled words count), most terms matched first."""
    patterns = ["%" + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for t in terms]
    rows = conn.execute(
        text(
            "SELECT i.page_id, SUM(CASE WHEN i.text ILIKE p.pattern THEN 1.0"
            "  ELSE word_similarity(p.term, i.text) END) AS score"
            " FROM page_index i"
            " JOIN unnest(CAST(:terms AS text[]), CAST(:patterns AS text[])) AS p(term, pattern)"
            "  ON i.text ILIKE p.pattern OR p.term <% i.text"
            " WHERE i.session_id = :session"
            " GROUP BY i.page_id ORDER BY score DESC, i.page_id DESC LIMIT :limit"
        ),
        {"terms": list(terms), "patterns": patterns, "session": session_id, "limit": limit},
    )
    return [int(r[0]) for r in rows]


def bytewise(column: ColumnElement[str]) -> ColumnElement[str]:
    return column.collate("C")


def problems(conn: Connection) -> list[str]:
    return []  # PostgreSQL checks its own pages; nothing cheap to ask it here


class PostgresStore(SqlStore):
    """The scale-out store: PostgreSQL through psycopg 3 and a connection pool, for many
    replicas. Safe to share between threads, processes and machines."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0) -> None:
        try:
            super().__init__(url, min_size=min_size, max_size=max_size, timeout=timeout)
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"cannot open database {redact(url)}: {exc}") from exc

    @contextmanager
    def pooled(self) -> Iterator[psycopg.Connection[DictRow]]:
        """A pooled psycopg connection of its own in autocommit, with dict rows, even inside a
        transaction (for the decode queue, which speaks psycopg)."""
        with self._errors(), self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            raw = conn.connection.driver_connection
            assert isinstance(raw, psycopg.Connection)
            factory = raw.row_factory
            raw.row_factory = dict_row
            try:
                yield raw
            finally:
                raw.row_factory = factory
