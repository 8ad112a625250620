"""SQLite schema migrations: numbered, named functions, each applied once in a transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable


def _run(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT the surrounding transaction; run statement by statement.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def m001_initial(db: sqlite3.Connection) -> None:
    _run(
        db,
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}'
        );
        CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL REFERENCES sessions(id),
            seq INTEGER NOT NULL,
            role TEXT NOT NULL,
            name TEXT,
            content TEXT,              -- NULL once the archive is dropped
            content_sha256 TEXT NOT NULL,
            chars INTEGER NOT NULL,
            text_tokens INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            metadata TEXT NOT NULL DEFAULT '{}',
            paged INTEGER NOT NULL DEFAULT 0,
            UNIQUE (session_id, seq)
        );
        CREATE TABLE pages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id TEXT NOT NULL REFERENCES sessions(id),
            seq INTEGER NOT NULL,
            mode TEXT NOT NULL,
            creation_mode TEXT NOT NULL,
            canvas INTEGER NOT NULL,
            creation_canvas INTEGER NOT NULL,
            font_px INTEGER NOT NULL,
            has_cjk INTEGER NOT NULL,
            png BLOB NOT NULL,
            layout TEXT NOT NULL,          -- JSON list of line boxes on the creation canvas
            text_tokens INTEGER NOT NULL,
            chars INTEGER NOT NULL,
            representation BLOB,
            representation_backend TEXT,
            created_at TEXT NOT NULL,
            aged_at TEXT,
            last_turn_seq INTEGER NOT NULL,
            last_turn_at TEXT NOT NULL,
            UNIQUE (session_id, seq)
        );
        CREATE TABLE page_spans (
            page_id INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,
            turn_id INTEGER NOT NULL REFERENCES turns(id),
            start INTEGER NOT NULL,
            "end" INTEGER NOT NULL,
            PRIMARY KEY (page_id, turn_id)
        );
        CREATE INDEX page_spans_turn ON page_spans(turn_id);
        CREATE TABLE verbatim (
            page_id INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,
            value TEXT NOT NULL,
            turn_id INTEGER NOT NULL,
            "offset" INTEGER NOT NULL
        );
        CREATE INDEX verbatim_page ON verbatim(page_id);
        CREATE TABLE decoded (
            page_id INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,
            mode TEXT NOT NULL,
            backend TEXT NOT NULL,
            text TEXT NOT NULL,
            lines TEXT,                 -- JSON list aligned with the layout, when known
            confidence REAL NOT NULL,
            seconds REAL NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (page_id, mode, backend)
        );
        CREATE INDEX turns_session ON turns(session_id, paged, seq);
        CREATE INDEX pages_session ON pages(session_id, seq);
        """,
    )


def m002_external_ids_and_fingerprints(db: sqlite3.Connection) -> None:
    """Caller-supplied turn ids (unique per session); decoded text keyed by the backend's
    fingerprint, so new weights or new trained data never serve stale text."""
    _run(
        db,
        """
        ALTER TABLE turns ADD COLUMN external_id TEXT;
        CREATE UNIQUE INDEX turns_external ON turns(session_id, external_id) WHERE external_id IS NOT NULL;
        DELETE FROM decoded;
        ALTER TABLE decoded ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
        CREATE UNIQUE INDEX decoded_fingerprint ON decoded(page_id, mode, fingerprint)
        """,
    )


def m003_search_index(db: sqlite3.Connection) -> None:
    """Decoded text and side-channel strings of each page in an FTS5 trigram index, so a query
    finds substrings (OCR-glued words included) without decoding every page again."""
    _run(
        db,
        """
        CREATE VIRTUAL TABLE page_index USING fts5(
            text, page_id UNINDEXED, session_id UNINDEXED, tokenize = 'trigram'
        )
        """,
    )


def m004_rehearsal(db: sqlite3.Connection) -> None:
    """The turn seq at which a page was last rehearsed (sharpened on recall): the aging
    policies count its age from there."""
    _run(db, "ALTER TABLE pages ADD COLUMN rehearsed_seq INTEGER")


def m005_request_counts(db: sqlite3.Connection) -> None:
    """Requests per API key and minute, counted where every worker process and replica of the
    service sees them (its rate limit)."""
    _run(
        db,
        """
        CREATE TABLE request_counts (
            key TEXT NOT NULL,
            minute INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (key, minute)
        ) WITHOUT ROWID
        """,
    )


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (
    m001_initial,
    m002_external_ids_and_fingerprints,
    m003_search_index,
    m004_rehearsal,
    m005_request_counts,
)
SCHEMA_VERSION = len(MIGRATIONS)
