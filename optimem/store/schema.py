"""The tables optimem keeps, once for every engine (SQLAlchemy Core `MetaData`).

Statements are built from these tables; the Alembic revisions in `optimem/store/migrations/`
create and change them, so a new column is one line here plus one revision there. Column types
carry their own conversion: JSON is `jsonb` on PostgreSQL and text on SQLite, binary is
`bytea`/BLOB, times are `timestamptz` on PostgreSQL and ISO-8601 text on SQLite (what the
store wrote before it moved to SQLAlchemy), and every row names its tenant (the session id's
prefix before its first ``/``). One table differs by engine: `page_index` is an FTS5 trigram
virtual table on SQLite and a plain table with a `pg_trgm` index on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from .base import parse_time


class Timestamp(TypeDecorator[datetime]):
    """An aware time: `timestamptz` on PostgreSQL, ISO-8601 text on SQLite. Binds a datetime or
    an ISO string, reads back a datetime in UTC when the text has no offset."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return parse_time(value)
        return value.isoformat(timespec="microseconds") if isinstance(value, datetime) else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else parse_time(value)


def _json(**kw: Any) -> TypeEngine[Any]:
    return JSON(**kw).with_variant(JSONB(**kw), "postgresql")


#: Integer ids: 64-bit on PostgreSQL; SQLite's INTEGER PRIMARY KEY is its rowid (64-bit already).
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

sessions = Table(
    "sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("metadata", _json(), nullable=False),
)

turns = Table(
    "turns",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("session_id", Text, ForeignKey("sessions.id"), nullable=False),
    Column("tenant", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("role", Text, nullable=False),
    Column("name", Text),
    Column("content", Text, doc="None once the session's archive is dropped"),
    Column("content_sha256", Text, nullable=False),
    Column("chars", Integer, nullable=False),
    Column("text_tokens", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("metadata", _json(), nullable=False),
    Column("paged", Boolean, nullable=False, default=False),
    Column("external_id", Text),
    UniqueConstraint("session_id", "seq"),
    Index("turns_session", "session_id", "paged", "seq"),
    Index(
        "turns_external",
        "session_id",
        "external_id",
        unique=True,
        sqlite_where=Column("external_id").isnot(None),
        postgresql_where=Column("external_id").isnot(None),
    ),
)

pages = Table(
    "pages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("session_id", Text, ForeignKey("sessions.id"), nullable=False),
    Column("tenant", Text, nullable=False),
    Column("seq", Integer, nullable=False),
    Column("mode", Text, nullable=False),
    Column("creation_mode", Text, nullable=False),
    Column("canvas", Integer, nullable=False),
    Column("creation_canvas", Integer, nullable=False),
    Column("font_px", Integer, nullable=False),
    Column("has_cjk", Boolean, nullable=False),
    Column("png", LargeBinary, nullable=False),
    Column("layout", _json(), nullable=False, doc="line boxes on the creation canvas"),
    Column("text_tokens", Integer, nullable=False),
    Column("chars", Integer, nullable=False),
    Column("representation", LargeBinary),
    Column("representation_backend", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("aged_at", Timestamp),
    Column("last_turn_seq", Integer, nullable=False),
    Column("last_turn_at", Timestamp, nullable=False),
    Column("rehearsed_seq", Integer, doc="the session's last turn seq when last rehearsed"),
    UniqueConstraint("session_id", "seq"),
    Index("pages_session", "session_id", "seq"),
)

page_spans = Table(
    "page_spans",
    metadata,
    Column("page_id", Id, ForeignKey("pages.id", ondelete="CASCADE"), nullable=False),
    Column("turn_id", Id, ForeignKey("turns.id"), nullable=False),
    Column("tenant", Text, nullable=False),
    Column("start", Integer, nullable=False),
    Column("end", Integer, nullable=False),
    PrimaryKeyConstraint("page_id", "turn_id"),
    Index("page_spans_turn", "turn_id"),
)

verbatim = Table(
    "verbatim",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("page_id", Id, ForeignKey("pages.id", ondelete="CASCADE"), nullable=False),
    Column("tenant", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("turn_id", Id, nullable=False),
    Column("offset", Integer, nullable=False),
    Index("verbatim_page", "page_id"),
)

reading_aids = Table(
    "reading_aids",
    metadata,
    Column("page_id", Id, ForeignKey("pages.id", ondelete="CASCADE"), primary_key=True),
    Column("tenant", Text, nullable=False),
    Column("checks", LargeBinary, nullable=False, doc="3-byte word check of each line, in order"),
    Column("lexicon", _json(), nullable=False, doc="the page's rare words"),
    Column("lexicon_complete", Boolean, nullable=False, doc="false when the lexicon was cut at its cap"),
)

decoded = Table(
    "decoded",
    metadata,
    Column("page_id", Id, ForeignKey("pages.id", ondelete="CASCADE"), nullable=False),
    Column("tenant", Text, nullable=False),
    Column("mode", Text, nullable=False),
    Column("backend", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("lines", _json(none_as_null=True), doc="lines aligned with the layout, when known"),
    Column("confidence", Float, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("verified", Integer, doc="lines that passed their word check; None when unknown"),
    Column("created_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("page_id", "mode", "fingerprint"),
)

#: SQLite: FTS5 virtual table (trigram); PostgreSQL: table with a pg_trgm GIN index.
page_index = Table(
    "page_index",
    metadata,
    Column("page_id", Id, primary_key=True),
    Column("session_id", Text, nullable=False),
    Column("tenant", Text, nullable=False),
    Column("text", Text, nullable=False),
)

request_counts = Table(
    "request_counts",
    metadata,
    Column("key", Text, nullable=False),
    Column("minute", BigInteger, nullable=False),
    Column("n", Integer, nullable=False),
    PrimaryKeyConstraint("key", "minute"),
)
