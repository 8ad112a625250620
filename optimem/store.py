"""Persistence in SQLite: sessions, turns, pages, decoded text. WAL, migrations, transactions.

Every write that must land whole (a compress step) runs inside `Store.transaction()`, a
`BEGIN IMMEDIATE … COMMIT`: a process killed at any instant leaves either the old state or
the new one. Each thread gets its own connection, so background decoding never shares one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import PageNotFound, SchemaError, SessionNotFound, StoreError
from .migrations import MIGRATIONS, SCHEMA_VERSION
from .modes import Mode
from .render import LineBox, Span
from .verbatim import VerbatimItem


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def parse_time(value: str) -> datetime:
    t = datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TurnRecord:
    """A stored turn. `content` is None once the session's archive has been dropped."""

    id: int
    session_id: str
    seq: int
    role: str
    content: str | None
    name: str | None
    text_tokens: int
    chars: int
    created_at: datetime
    metadata: dict
    paged: bool


@dataclass(frozen=True)
class PageRecord:
    """A stored page, without its image bytes (see `Store.page_png`)."""

    id: int
    session_id: str
    seq: int
    mode: Mode
    creation_mode: Mode
    canvas: int
    creation_canvas: int
    font_px: int
    has_cjk: bool
    text_tokens: int
    chars: int
    created_at: datetime
    aged_at: datetime | None
    last_turn_seq: int
    last_turn_at: datetime
    spans: tuple[Span, ...]

    @property
    def turn_ids(self) -> tuple[int, ...]:
        return tuple(s.turn_id for s in self.spans)

    @property
    def positions(self) -> int:
        return self.mode.positions


@dataclass(frozen=True)
class NewPage:
    """Everything compress writes for one page, gathered before the transaction."""

    mode: Mode
    canvas: int
    font_px: int
    has_cjk: bool
    png: bytes
    lines: Sequence[LineBox]
    spans: Sequence[Span]
    text_tokens: int
    chars: int
    verbatim: Sequence[VerbatimItem]
    last_turn_seq: int
    last_turn_at: str
    representation: bytes | None = None
    representation_backend: str | None = None


@dataclass(frozen=True)
class DecodedRecord:
    page_id: int
    mode: Mode
    backend: str
    text: str
    lines: tuple[str, ...] | None
    confidence: float
    seconds: float


def _resolve(path: str | os.PathLike[str]) -> tuple[str, bool]:
    """(sqlite target, is_uri) for a path, a sqlite:/// URL or ':memory:'."""
    text = os.fspath(path)
    if text == ":memory:":
        return f"file:optimem-{uuid.uuid4().hex}?mode=memory&cache=shared", True
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise StoreError(f"unsupported database URL scheme {scheme!r}: use a file path or sqlite:///path")
    Path(text).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    return str(Path(text).expanduser()), False


class Store:
    """SQLite persistence for optimem. Safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike[str] = "optimem.db", *, timeout: float = 60.0) -> None:
        self.path = os.fspath(path)
        self._target, self._uri = _resolve(path)
        self._timeout = timeout
        self._local = threading.local()
        self._keepalive = self._connect() if self._uri else None  # in-memory db lives with it
        self._migrate()

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(
                self._target,
                timeout=self._timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,
                uri=self._uri,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self.path!r}: {exc}") from exc
        db.row_factory = sqlite3.Row
        if not self._uri:
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute(f"PRAGMA busy_timeout={int(self._timeout * 1000)}")
        return db

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            self._local.depth = 0
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (nested calls join the outer one)."""
        db = self.db
        if self._local.depth:
            self._local.depth += 1
            try:
                yield db
            finally:
                self._local.depth -= 1
            return
        db.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
        finally:
            self._local.depth = 0

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
        if self._keepalive is not None:
            self._keepalive.close()
            self._keepalive = None

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise SchemaError(
                    f"{self.path!r} has schema version {current}, newer than this optimem "
                    f"understands ({SCHEMA_VERSION}): upgrade optimem"
                )
            for version, migration in enumerate(MIGRATIONS, start=1):
                if version > current:
                    migration(db)
                    db.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (version, migration.__name__, utcnow()),
                    )

    def schema_version(self) -> int:
        return self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    # -- sessions and turns ----------------------------------------------------------------

    def ensure_session(self, session_id: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO sessions (id, created_at) VALUES (?, ?)",
                (session_id, utcnow()),
            )

    def session_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT id FROM sessions ORDER BY created_at, id")]

    def require_session(self, session_id: str) -> None:
        if self.db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise SessionNotFound(f"no session {session_id!r}")

    def add_turns(self, session_id: str, rows: Sequence[dict]) -> list[int]:
        """Append turns in order; returns their ids. All or nothing."""
        ids: list[int] = []
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO sessions (id, created_at) VALUES (?, ?)",
                (session_id, utcnow()),
            )
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM turns WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            for row in rows:
                seq += 1
                cur = db.execute(
                    "INSERT INTO turns (session_id, seq, role, name, content, content_sha256, chars,"
                    " text_tokens, created_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        session_id,
                        seq,
                        row["role"],
                        row.get("name"),
                        row["content"],
                        row["sha256"],
                        len(row["content"]),
                        row["text_tokens"],
                        row["created_at"],
                        json.dumps(row.get("metadata") or {}, ensure_ascii=False),
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    @staticmethod
    def _turn(row: sqlite3.Row) -> TurnRecord:
        return TurnRecord(
            id=row["id"],
            session_id=row["session_id"],
            seq=row["seq"],
            role=row["role"],
            content=row["content"],
            name=row["name"],
            text_tokens=row["text_tokens"],
            chars=row["chars"],
            created_at=parse_time(row["created_at"]),
            metadata=json.loads(row["metadata"]),
            paged=bool(row["paged"]),
        )

    def turns(self, session_id: str, *, paged: bool | None = None) -> list[TurnRecord]:
        sql = "SELECT * FROM turns WHERE session_id = ?"
        args: list = [session_id]
        if paged is not None:
            sql += " AND paged = ?"
            args.append(int(paged))
        return [self._turn(r) for r in self.db.execute(sql + " ORDER BY seq", args)]

    def turn_count(self, session_id: str) -> int:
        return self.db.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM turns WHERE session_id = ?", (session_id,)
        ).fetchone()[0]

    def drop_archive(self, session_id: str) -> int:
        """Forget the source text of paged turns; returns how many turns were cleared."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE turns SET content = NULL WHERE session_id = ? AND paged = 1 AND content IS NOT NULL",
                (session_id,),
            )
            return cur.rowcount

    # -- pages -----------------------------------------------------------------------------

    def insert_pages(
        self,
        session_id: str,
        pages: Sequence[NewPage],
        fully_paged: Sequence[int],
        reuse_id: int | None = None,
    ) -> list[int]:
        """Write pages with their spans and verbatim strings; mark `fully_paged` turns paged.

        `reuse_id` gives the first page the id of a page just reopened, so ids users hold stay
        valid. Call inside `transaction()` together with the read that chose the turns.
        """
        ids: list[int] = []
        with self.transaction() as db:
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM pages WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            now = utcnow()
            for page in pages:
                seq += 1
                explicit_id = reuse_id if page is pages[0] else None
                cur = db.execute(
                    "INSERT INTO pages (id, session_id, seq, mode, creation_mode, canvas, creation_canvas,"
                    " font_px, has_cjk, png, layout, text_tokens, chars, representation,"
                    " representation_backend, created_at, last_turn_seq, last_turn_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        explicit_id,
                        session_id,
                        seq,
                        page.mode.value,
                        page.mode.value,
                        page.canvas,
                        page.canvas,
                        page.font_px,
                        int(page.has_cjk),
                        page.png,
                        json.dumps([line.to_json() for line in page.lines], ensure_ascii=False),
                        page.text_tokens,
                        page.chars,
                        page.representation,
                        page.representation_backend,
                        now,
                        page.last_turn_seq,
                        page.last_turn_at,
                    ),
                )
                page_id = int(cur.lastrowid or 0)
                ids.append(page_id)
                db.executemany(
                    'INSERT INTO page_spans (page_id, turn_id, start, "end") VALUES (?, ?, ?, ?)',
                    [(page_id, s.turn_id, s.start, s.end) for s in page.spans],
                )
                db.executemany(
                    'INSERT INTO verbatim (page_id, kind, value, turn_id, "offset") VALUES (?, ?, ?, ?, ?)',
                    [(page_id, v.kind, v.value, v.turn_id, v.offset) for v in page.verbatim],
                )
            if fully_paged:
                db.executemany("UPDATE turns SET paged = 1 WHERE id = ?", [(t,) for t in fully_paged])
        return ids

    def reopen_last_page(self, session_id: str, mode: Mode, min_fill: float) -> tuple[int, int] | None:
        """Take back the session's last page if it is partly filled and never aged.

        Its turns become unpaged again (a turn split across pages keeps its earlier pieces),
        so the next compress typesets them together with newer turns instead of leaving a
        half-empty page behind forever. Returns (id, seq) for the page that replaces it.
        Call inside `transaction()`.
        """
        with self.transaction() as db:
            row = db.execute(
                "SELECT id, seq, mode, creation_mode, canvas, layout FROM pages WHERE session_id = ?"
                " ORDER BY seq DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            if row is None or row["mode"] != mode.value or row["creation_mode"] != mode.value:
                return None
            lines = json.loads(row["layout"])
            fill = (lines[-1][3] / row["canvas"]) if lines else 0.0
            if fill >= min_fill:
                return None
            turn_ids = [
                r[0] for r in db.execute("SELECT turn_id FROM page_spans WHERE page_id = ?", (row["id"],))
            ]
            db.execute("DELETE FROM pages WHERE id = ?", (row["id"],))  # spans, verbatim, decoded cascade
            db.executemany("UPDATE turns SET paged = 0 WHERE id = ?", [(t,) for t in turn_ids])
            return int(row["id"]), int(row["seq"])

    def _spans(self, page_ids: Sequence[int]) -> dict[int, list[Span]]:
        out: dict[int, list[Span]] = {pid: [] for pid in page_ids}
        if not page_ids:
            return out
        marks = ",".join("?" * len(page_ids))
        for r in self.db.execute(
            f'SELECT page_id, turn_id, start, "end" FROM page_spans WHERE page_id IN ({marks})'
            " ORDER BY turn_id",
            list(page_ids),
        ):
            out[r[0]].append(Span(r[1], r[2], r[3]))
        return out

    def _page(self, row: sqlite3.Row, spans: Sequence[Span]) -> PageRecord:
        return PageRecord(
            id=row["id"],
            session_id=row["session_id"],
            seq=row["seq"],
            mode=Mode(row["mode"]),
            creation_mode=Mode(row["creation_mode"]),
            canvas=row["canvas"],
            creation_canvas=row["creation_canvas"],
            font_px=row["font_px"],
            has_cjk=bool(row["has_cjk"]),
            text_tokens=row["text_tokens"],
            chars=row["chars"],
            created_at=parse_time(row["created_at"]),
            aged_at=parse_time(row["aged_at"]) if row["aged_at"] else None,
            last_turn_seq=row["last_turn_seq"],
            last_turn_at=parse_time(row["last_turn_at"]),
            spans=tuple(spans),
        )

    _PAGE_COLUMNS = (
        "id, session_id, seq, mode, creation_mode, canvas, creation_canvas, font_px, has_cjk,"
        " text_tokens, chars, created_at, aged_at, last_turn_seq, last_turn_at"
    )

    def pages(self, session_id: str) -> list[PageRecord]:
        rows = self.db.execute(
            f"SELECT {self._PAGE_COLUMNS} FROM pages WHERE session_id = ? ORDER BY seq",
            (session_id,),
        ).fetchall()
        spans = self._spans([r["id"] for r in rows])
        return [self._page(r, spans[r["id"]]) for r in rows]

    def page(self, session_id: str, page_id: int) -> PageRecord:
        row = self.db.execute(
            f"SELECT {self._PAGE_COLUMNS} FROM pages WHERE id = ? AND session_id = ?",
            (int(page_id), session_id),
        ).fetchone()
        if row is None:
            raise PageNotFound(f"no page {page_id} in session {session_id!r}")
        return self._page(row, self._spans([row["id"]])[row["id"]])

    def page_blobs(self, page_id: int) -> tuple[bytes, list[LineBox], bytes | None, str | None]:
        """(png, layout on the creation canvas, representation, backend that made it)."""
        row = self.db.execute(
            "SELECT png, layout, representation, representation_backend FROM pages WHERE id = ?",
            (int(page_id),),
        ).fetchone()
        if row is None:
            raise PageNotFound(f"no page {page_id}")
        lines = [LineBox.from_json(x) for x in json.loads(row["layout"])]
        return row["png"], lines, row["representation"], row["representation_backend"]

    def set_page_mode(
        self,
        page_id: int,
        mode: Mode,
        png: bytes,
        representation: bytes | None,
        backend: str | None,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE pages SET mode = ?, canvas = ?, png = ?, representation = ?,"
                " representation_backend = ?, aged_at = ? WHERE id = ?",
                (mode.value, mode.canvas, png, representation, backend, utcnow(), int(page_id)),
            )

    def verbatim(self, page_id: int) -> list[VerbatimItem]:
        return [
            VerbatimItem(r[0], r[1], r[2], r[3])
            for r in self.db.execute(
                'SELECT kind, value, turn_id, "offset" FROM verbatim WHERE page_id = ? ORDER BY rowid',
                (int(page_id),),
            )
        ]

    # -- decoded text cache ----------------------------------------------------------------

    def put_decoded(self, record: DecodedRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO decoded (page_id, mode, backend, text, lines, confidence,"
                " seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.page_id,
                    record.mode.value,
                    record.backend,
                    record.text,
                    json.dumps(list(record.lines), ensure_ascii=False) if record.lines is not None else None,
                    record.confidence,
                    record.seconds,
                    utcnow(),
                ),
            )

    def get_decoded(self, page_id: int, mode: Mode, backend: str) -> DecodedRecord | None:
        row = self.db.execute(
            "SELECT * FROM decoded WHERE page_id = ? AND mode = ? AND backend = ?",
            (int(page_id), mode.value, backend),
        ).fetchone()
        if row is None:
            return None
        return DecodedRecord(
            page_id=row["page_id"],
            mode=Mode(row["mode"]),
            backend=row["backend"],
            text=row["text"],
            lines=tuple(json.loads(row["lines"])) if row["lines"] is not None else None,
            confidence=row["confidence"],
            seconds=row["seconds"],
        )

    def integrity_problems(self) -> list[str]:
        """Human-readable problems: orphan pages, pages without spans, unpaged holes."""
        problems = [r[0] for r in self.db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        for (pid,) in self.db.execute(
            "SELECT id FROM pages WHERE id NOT IN (SELECT page_id FROM page_spans)"
        ):
            problems.append(f"page {pid} covers no turn")
        for (tid,) in self.db.execute(
            "SELECT id FROM turns WHERE paged = 1 AND id NOT IN (SELECT turn_id FROM page_spans)"
        ):
            problems.append(f"turn {tid} is marked paged but no page holds it")
        return problems
