"""The embedded store: SQLite in WAL mode, numbered migrations, one transaction per compress step.

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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import PageNotFound, SchemaError, SessionNotFound, StoreError
from ..layout import LineBox, Span, VerbatimItem
from ..modes import Mode
from .base import DecodedRecord, NewPage, PageRecord, SessionInfo, TurnRecord, iter_chunks, parse_time, utcnow
from .migrations import MIGRATIONS, SCHEMA_VERSION


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


class SQLiteStore:
    """SQLite persistence for optimem. Safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike[str] = "optimem.db", *, timeout: float = 60.0) -> None:
        self.path = os.fspath(path)
        self.url = self.path if self.path == ":memory:" or "://" in self.path else f"sqlite:///{self.path}"
        self._target, self._uri = _resolve(path)
        self._timeout = timeout
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
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
        with self._all_lock:
            self._all.append(db)
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
        """Close every thread's connection (background decoding opens its own)."""
        with self._all_lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
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

    def count_request(self, key: str, minute: int) -> tuple[int, int]:
        with self.transaction() as db:
            n = db.execute(
                "INSERT INTO request_counts (key, minute, n) VALUES (?, ?, 1)"
                " ON CONFLICT (key, minute) DO UPDATE SET n = n + 1 RETURNING n",
                (key, minute),
            ).fetchone()[0]
            if n == 1:  # a new minute for this key: forget what no limit looks at any more
                db.execute("DELETE FROM request_counts WHERE minute < ?", (minute - 1,))
            row = db.execute(
                "SELECT n FROM request_counts WHERE key = ? AND minute = ?", (key, minute - 1)
            ).fetchone()
        return int(n), int(row[0]) if row else 0

    def schema_version(self) -> int:
        return self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]

    # -- sessions and turns ----------------------------------------------------------------

    def session_ids(self, prefix: str | None = None) -> list[str]:
        if prefix:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self.db.execute(
                "SELECT id FROM sessions WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at, id",
                (escaped + "%",),
            )
            return [r[0] for r in rows if r[0].startswith(prefix)]  # LIKE folds ASCII case
        return [r[0] for r in self.db.execute("SELECT id FROM sessions ORDER BY created_at, id")]

    def has_session(self, session_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is not None

    def require_session(self, session_id: str) -> None:
        if not self.has_session(session_id):
            raise SessionNotFound(f"no session {session_id!r}")

    def session_info(self, session_id: str) -> SessionInfo:
        row = self.db.execute(
            "SELECT s.created_at,"
            " (SELECT COUNT(*) FROM turns WHERE session_id = s.id),"
            " (SELECT COUNT(*) FROM pages WHERE session_id = s.id),"
            " (SELECT MAX(created_at) FROM turns WHERE session_id = s.id)"
            " FROM sessions s WHERE s.id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            raise SessionNotFound(f"no session {session_id!r}")
        return SessionInfo(
            session_id, parse_time(row[0]), row[1], row[2], parse_time(row[3]) if row[3] else None
        )

    def delete_session(self, session_id: str) -> dict[str, int]:
        """Delete the session and everything of it; returns row counts by kind."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
                raise SessionNotFound(f"no session {session_id!r}")
            pages = "SELECT id FROM pages WHERE session_id = ?"
            counts = {
                "turns": db.execute("SELECT COUNT(*) FROM turns WHERE session_id = ?", (session_id,)),
                "pages": db.execute("SELECT COUNT(*) FROM pages WHERE session_id = ?", (session_id,)),
                "decoded": db.execute(
                    f"SELECT COUNT(*) FROM decoded WHERE page_id IN ({pages})", (session_id,)
                ),
                "verbatim": db.execute(
                    f"SELECT COUNT(*) FROM verbatim WHERE page_id IN ({pages})", (session_id,)
                ),
            }
            out = {k: int(cur.fetchone()[0]) for k, cur in counts.items()}
            db.execute(f"DELETE FROM page_index WHERE page_id IN ({pages})", (session_id,))
            db.execute("DELETE FROM pages WHERE session_id = ?", (session_id,))  # cascades
            db.execute("DELETE FROM turns WHERE session_id = ?", (session_id,))
            db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            return out

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
                    " text_tokens, created_at, metadata, external_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        row.get("external_id"),
                    ),
                )
                ids.append(int(cur.lastrowid or 0))
        return ids

    def lookup_external_ids(self, session_id: str, external_ids: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(external_ids))
        out: dict[str, int] = {}
        for chunk in iter_chunks(wanted):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(
                f"SELECT external_id, id FROM turns WHERE session_id = ? AND external_id IN ({marks})",
                [session_id, *chunk],
            ):
                out[r[0]] = r[1]
        return out

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
            external_id=row["external_id"],
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

    def span_ends(self, turn_ids: Sequence[int]) -> dict[int, int]:
        """Turn id → offset just past the last character of it already on a page."""
        out: dict[int, int] = {}
        for chunk in iter_chunks(list(turn_ids)):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(
                f'SELECT turn_id, MAX("end") FROM page_spans WHERE turn_id IN ({marks}) GROUP BY turn_id',
                list(chunk),
            ):
                out[r[0]] = r[1]
        return out

    def drop_archive(self, session_id: str) -> int:
        """Forget the source text of paged turns, in the turns and in the pages' layouts (line
        geometry and character counts stay); returns how many turns were cleared."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE turns SET content = NULL WHERE session_id = ? AND paged = 1 AND content IS NOT NULL",
                (session_id,),
            )
            cleared = cur.rowcount
            if cleared:
                gone = {
                    r[0]
                    for r in db.execute(
                        "SELECT id FROM turns WHERE session_id = ? AND content IS NULL", (session_id,)
                    )
                }
                for pid, layout in db.execute(
                    "SELECT id, layout FROM pages WHERE session_id = ?", (session_id,)
                ).fetchall():
                    lines = json.loads(layout)
                    for line in lines:
                        if line[5] in gone:
                            line[4] = ""
                    db.execute(
                        "UPDATE pages SET layout = ? WHERE id = ?",
                        (json.dumps(lines, ensure_ascii=False), pid),
                    )
            return cleared

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

    def unpage(self, page_id: int) -> list[int]:
        """Delete a page and mark the turns it held unpaged again; returns those turn ids.

        Paging uses it to take back a half-empty last page and typeset its turns with newer
        ones (a turn split across pages keeps its earlier pieces). Call inside `transaction()`.
        """
        with self.transaction() as db:
            turn_ids = [
                r[0] for r in db.execute("SELECT turn_id FROM page_spans WHERE page_id = ?", (page_id,))
            ]
            db.execute("DELETE FROM page_index WHERE page_id = ?", (page_id,))
            db.execute("DELETE FROM pages WHERE id = ?", (page_id,))  # spans, verbatim, decoded cascade
            db.executemany("UPDATE turns SET paged = 0 WHERE id = ?", [(t,) for t in turn_ids])
            return turn_ids

    def _spans(self, page_ids: Sequence[int]) -> dict[int, list[Span]]:
        out: dict[int, list[Span]] = {pid: [] for pid in page_ids}
        for chunk in iter_chunks(list(page_ids)):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(
                f'SELECT page_id, turn_id, start, "end" FROM page_spans WHERE page_id IN ({marks})'
                " ORDER BY turn_id",
                list(chunk),
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
            rehearsed_seq=row["rehearsed_seq"],
        )

    _PAGE_COLUMNS = (
        "id, session_id, seq, mode, creation_mode, canvas, creation_canvas, font_px, has_cjk,"
        " text_tokens, chars, created_at, aged_at, last_turn_seq, last_turn_at, rehearsed_seq"
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

    def page_by_id(self, page_id: int) -> PageRecord:
        """A page whatever its session (for background decoding, which knows only ids)."""
        row = self.db.execute(
            f"SELECT {self._PAGE_COLUMNS} FROM pages WHERE id = ?", (int(page_id),)
        ).fetchone()
        if row is None:
            raise PageNotFound(f"no page {page_id}")
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

    def rehearse_page(
        self,
        page_id: int,
        mode: Mode,
        png: bytes,
        representation: bytes | None,
        backend: str | None,
        at_seq: int,
    ) -> None:
        """Keep a page at a sharper `mode` again (rehearsal), noting the turn seq it happened at."""
        with self.transaction() as db:
            db.execute(
                "UPDATE pages SET mode = ?, canvas = ?, png = ?, representation = ?,"
                " representation_backend = ?, rehearsed_seq = ? WHERE id = ?",
                (mode.value, mode.canvas, png, representation, backend, int(at_seq), int(page_id)),
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

    def put_decoded(self, record: DecodedRecord, index_text: str) -> None:
        """Cache a decode and make `index_text` the page's searchable text."""
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO decoded (page_id, mode, backend, fingerprint, text, lines,"
                " confidence, seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.page_id,
                    record.mode.value,
                    record.backend,
                    record.fingerprint,
                    record.text,
                    json.dumps(list(record.lines), ensure_ascii=False) if record.lines is not None else None,
                    record.confidence,
                    record.seconds,
                    utcnow(),
                ),
            )
            db.execute("DELETE FROM page_index WHERE page_id = ?", (record.page_id,))
            db.execute(
                "INSERT INTO page_index (text, page_id, session_id)"
                " SELECT ?, id, session_id FROM pages WHERE id = ?",
                (index_text, record.page_id),
            )

    def get_decoded(self, page_id: int, mode: Mode, fingerprint: str) -> DecodedRecord | None:
        row = self.db.execute(
            "SELECT * FROM decoded WHERE page_id = ? AND mode = ? AND fingerprint = ?",
            (int(page_id), mode.value, fingerprint),
        ).fetchone()
        if row is None:
            return None
        return DecodedRecord(
            page_id=row["page_id"],
            mode=Mode(row["mode"]),
            backend=row["backend"],
            fingerprint=row["fingerprint"],
            text=row["text"],
            lines=tuple(json.loads(row["lines"])) if row["lines"] is not None else None,
            confidence=row["confidence"],
            seconds=row["seconds"],
        )

    def search_candidates(self, session_id: str, terms: Sequence[str], limit: int) -> list[int]:
        """Pages whose indexed text holds any of `terms` as a substring (trigram index), best first."""
        usable = [t for t in terms if len(t) >= 3]
        if not usable:
            return []
        query = " OR ".join('"' + t.replace('"', '""') + '"' for t in usable)
        rows = self.db.execute(
            "SELECT page_id FROM page_index WHERE page_index MATCH ? AND session_id = ?"
            " ORDER BY bm25(page_index) LIMIT ?",
            (query, session_id, int(limit)),
        )
        return [r[0] for r in rows]

    def indexed_text(self, page_ids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for chunk in iter_chunks(list(page_ids)):
            marks = ",".join("?" * len(chunk))
            for r in self.db.execute(
                f"SELECT page_id, text FROM page_index WHERE page_id IN ({marks})", list(chunk)
            ):
                out[r[0]] = r[1]
        return out

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
