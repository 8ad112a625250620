"""The scale-out store: PostgreSQL through psycopg 3 and a connection pool, for many replicas.

Same protocol, migrations and guarantees as the SQLite store. A write transaction takes the
row lock of every session it touches (``SELECT … FOR UPDATE`` on `sessions`, the first time it
touches it), so two replicas compressing one session serialise exactly as two SQLite writers
do under ``BEGIN IMMEDIATE``, and never page one turn twice. Pooled connections are checked
before use, so a restarted PostgreSQL costs the replicas one failed call, not a restart.
Every row carries the tenant (the session id's prefix before its first ``/``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ..errors import InputError, PageNotFound, SchemaError, SessionNotFound, StoreError
from ..layout import LineBox, Span, VerbatimItem
from ..modes import Mode
from .base import DecodedRecord, NewPage, PageRecord, SessionInfo, TurnRecord, parse_time, utcnow
from .migrations_pg import MIGRATIONS, SCHEMA_VERSION

Conn = psycopg.Connection[DictRow]

#: Key of the advisory lock that serialises migrations between replicas starting together.
MIGRATION_LOCK = 0x6F7074696D656D  # "optimem"


def one(cur: psycopg.Cursor[DictRow]) -> DictRow:
    """The one row a statement must return."""
    row = cur.fetchone()
    if row is None:  # pragma: no cover - aggregates and RETURNING always give a row
        raise StoreError("the database returned no row where one was expected")
    return row


def tenant_of(session_id: str) -> str:
    """The tenant a session belongs to: its id's prefix before the first ``/`` ('' without)."""
    return session_id.split("/", 1)[0] if "/" in session_id else ""


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://…"
    host, db = info.get("host", ""), info.get("dbname", "")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', '')}/{db}"


class PostgresStore:
    """PostgreSQL persistence for optimem. Safe to share between threads, processes, machines."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 30.0) -> None:
        self.url = url
        self._local = threading.local()
        self.pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"autocommit": True, "row_factory": dict_row},
            check=ConnectionPool.check_connection,
            open=False,
            name="optimem",
        )
        try:
            self.pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            self.pool.close()
            raise StoreError(f"cannot open database {redact(url)}: {exc}") from exc
        self._migrate()

    # -- connections and transactions ------------------------------------------------------

    @contextmanager
    def _conn(self) -> Iterator[Conn]:
        """The thread's transaction connection, or a pooled one (autocommit) outside one."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        try:
            with self.pool.connection() as pooled:
                yield cast(Conn, pooled)
        except psycopg.OperationalError as exc:
            raise StoreError(f"database {redact(self.url)} unavailable: {exc}") from exc

    @contextmanager
    def pooled(self) -> Iterator[Conn]:
        """A pooled autocommit connection of its own, even inside a transaction (for the queue)."""
        try:
            with self.pool.connection() as pooled:
                yield cast(Conn, pooled)
        except psycopg.OperationalError as exc:
            raise StoreError(f"database {redact(self.url)} unavailable: {exc}") from exc

    def _q(self, sql: Any, args: Sequence[Any] | None = None) -> list[DictRow]:
        with self._conn() as conn:
            cur = conn.execute(sql, args)
            return cur.fetchall() if cur.description else []

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """One write transaction (nested calls join the outer one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        try:
            with self.pool.connection() as pooled, pooled.transaction():
                self._local.conn = cast(Conn, pooled)
                self._local.locked = set()
                try:
                    yield self._local.conn
                finally:
                    self._local.conn = None
        except psycopg.OperationalError as exc:
            raise StoreError(f"database {redact(self.url)} unavailable: {exc}") from exc

    def _lock(self, session_id: str) -> None:
        """Inside a transaction: hold the session's row lock until it ends (once per session)."""
        if getattr(self._local, "conn", None) is None or session_id in self._local.locked:
            return
        self._local.conn.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (session_id,))
        self._local.locked.add(session_id)

    def close(self) -> None:
        self.pool.close()

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)"
            )
            current = one(db.execute("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations"))["v"]
            if current > SCHEMA_VERSION:
                raise SchemaError(
                    f"{redact(self.url)} has schema version {current}, newer than this optimem "
                    f"understands ({SCHEMA_VERSION}): upgrade optimem"
                )
            for version, migration in enumerate(MIGRATIONS, start=1):
                if version > current:
                    migration(db)
                    db.execute(
                        "INSERT INTO schema_migrations VALUES (%s, %s, %s)",
                        (version, migration.__name__, utcnow()),
                    )

    def count_request(self, key: str, minute: int) -> tuple[int, int]:
        with self.transaction() as db:
            n = one(
                db.execute(
                    "INSERT INTO request_counts (key, minute, n) VALUES (%s, %s, 1)"
                    " ON CONFLICT (key, minute) DO UPDATE SET n = request_counts.n + 1 RETURNING n",
                    (key, minute),
                )
            )["n"]
            if n == 1:  # a new minute for this key: forget what no limit looks at any more
                db.execute("DELETE FROM request_counts WHERE minute < %s", (minute - 1,))
            rows = db.execute(
                "SELECT n FROM request_counts WHERE key = %s AND minute = %s", (key, minute - 1)
            ).fetchall()
        return int(n), int(rows[0]["n"]) if rows else 0

    def schema_version(self) -> int:
        return self._q("SELECT MAX(version) AS v FROM schema_migrations")[0]["v"]

    # -- sessions and turns ----------------------------------------------------------------

    def session_ids(self, prefix: str | None = None) -> list[str]:
        if prefix:
            rows = self._q(
                'SELECT id FROM sessions WHERE starts_with(id, %s) ORDER BY created_at, id COLLATE "C"',
                (prefix,),
            )
        else:
            rows = self._q('SELECT id FROM sessions ORDER BY created_at, id COLLATE "C"')
        return [r["id"] for r in rows]

    def has_session(self, session_id: str) -> bool:
        return bool(self._q("SELECT 1 FROM sessions WHERE id = %s", (session_id,)))

    def require_session(self, session_id: str) -> None:
        if not self.has_session(session_id):
            raise SessionNotFound(f"no session {session_id!r}")

    def session_info(self, session_id: str) -> SessionInfo:
        rows = self._q(
            "SELECT s.created_at,"
            " (SELECT COUNT(*) FROM turns WHERE session_id = s.id) AS turns,"
            " (SELECT COUNT(*) FROM pages WHERE session_id = s.id) AS pages,"
            " (SELECT MAX(created_at) FROM turns WHERE session_id = s.id) AS last"
            " FROM sessions s WHERE s.id = %s",
            (session_id,),
        )
        if not rows:
            raise SessionNotFound(f"no session {session_id!r}")
        r = rows[0]
        return SessionInfo(session_id, parse_time(r["created_at"]), r["turns"], r["pages"], r["last"])

    def delete_session(self, session_id: str) -> dict[str, int]:
        """Delete the session and everything of it; returns row counts by kind."""
        with self.transaction() as db:
            self._lock(session_id)
            if db.execute("SELECT 1 FROM sessions WHERE id = %s", (session_id,)).fetchone() is None:
                raise SessionNotFound(f"no session {session_id!r}")
            pages = "SELECT id FROM pages WHERE session_id = %s"
            out = {}
            for kind, sql in {
                "turns": "SELECT COUNT(*) AS n FROM turns WHERE session_id = %s",
                "pages": "SELECT COUNT(*) AS n FROM pages WHERE session_id = %s",
                "decoded": f"SELECT COUNT(*) AS n FROM decoded WHERE page_id IN ({pages})",
                "verbatim": f"SELECT COUNT(*) AS n FROM verbatim WHERE page_id IN ({pages})",
            }.items():
                out[kind] = int(one(db.execute(sql, (session_id,)))["n"])
            db.execute("DELETE FROM pages WHERE session_id = %s", (session_id,))  # cascades
            db.execute("DELETE FROM turns WHERE session_id = %s", (session_id,))
            db.execute("DELETE FROM sessions WHERE id = %s", (session_id,))
            return out

    def add_turns(self, session_id: str, rows: Sequence[dict]) -> list[int]:
        """Append turns in order; returns their ids. All or nothing."""
        ids: list[int] = []
        try:
            with self.transaction() as db:
                db.execute(
                    "INSERT INTO sessions (id, created_at) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                    (session_id, utcnow()),
                )
                self._lock(session_id)
                seq = one(
                    db.execute(
                        "SELECT COALESCE(MAX(seq), 0) AS s FROM turns WHERE session_id = %s", (session_id,)
                    )
                )["s"]
                for row in rows:
                    seq += 1
                    cur = db.execute(
                        "INSERT INTO turns (session_id, seq, role, name, content, content_sha256, chars,"
                        " text_tokens, created_at, metadata, external_id)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
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
                            Jsonb(row.get("metadata") or {}),
                            row.get("external_id"),
                        ),
                    )
                    ids.append(int(one(cur)["id"]))
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "turns_external":
                raise InputError(f"an external_id is already stored in session {session_id!r}") from exc
            raise StoreError(str(exc)) from exc
        return ids

    def lookup_external_ids(self, session_id: str, external_ids: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(external_ids))
        if not wanted:
            return {}
        rows = self._q(
            "SELECT external_id, id FROM turns WHERE session_id = %s AND external_id = ANY(%s)",
            (session_id, wanted),
        )
        return {r["external_id"]: r["id"] for r in rows}

    @staticmethod
    def _turn(row: dict) -> TurnRecord:
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
            metadata=row["metadata"],
            paged=row["paged"],
            external_id=row["external_id"],
        )

    def turns(self, session_id: str, *, paged: bool | None = None) -> list[TurnRecord]:
        self._lock(session_id)
        sql = "SELECT * FROM turns WHERE session_id = %s"
        args: list = [session_id]
        if paged is not None:
            sql += " AND paged = %s"
            args.append(paged)
        return [self._turn(r) for r in self._q(sql + " ORDER BY seq", args)]

    def turn_count(self, session_id: str) -> int:
        self._lock(session_id)
        return self._q("SELECT COALESCE(MAX(seq), 0) AS n FROM turns WHERE session_id = %s", (session_id,))[
            0
        ]["n"]

    def span_ends(self, turn_ids: Sequence[int]) -> dict[int, int]:
        """Turn id → offset just past the last character of it already on a page."""
        rows = self._q(
            'SELECT turn_id, MAX("end") AS e FROM page_spans WHERE turn_id = ANY(%s) GROUP BY turn_id',
            (list(turn_ids),),
        )
        return {r["turn_id"]: r["e"] for r in rows}

    def drop_archive(self, session_id: str) -> int:
        """Forget the source text of paged turns, in the turns and in the pages' layouts (line
        geometry and character counts stay); returns how many turns were cleared."""
        with self.transaction() as db:
            self._lock(session_id)
            cleared = db.execute(
                "UPDATE turns SET content = NULL WHERE session_id = %s AND paged AND content IS NOT NULL",
                (session_id,),
            ).rowcount
            if cleared:
                gone = {
                    r["id"]
                    for r in db.execute(
                        "SELECT id FROM turns WHERE session_id = %s AND content IS NULL", (session_id,)
                    )
                }
                for r in db.execute(
                    "SELECT id, layout FROM pages WHERE session_id = %s", (session_id,)
                ).fetchall():
                    lines = r["layout"]
                    for line in lines:
                        if line[5] in gone:
                            line[4] = ""
                    db.execute("UPDATE pages SET layout = %s WHERE id = %s", (Jsonb(lines), r["id"]))
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
        tenant = tenant_of(session_id)
        columns = (
            "session_id, seq, mode, creation_mode, canvas, creation_canvas, font_px, has_cjk, png,"
            " layout, text_tokens, chars, representation, representation_backend, created_at,"
            " last_turn_seq, last_turn_at"
        )
        with self.transaction() as db:
            self._lock(session_id)
            seq = one(
                db.execute(
                    "SELECT COALESCE(MAX(seq), 0) AS s FROM pages WHERE session_id = %s", (session_id,)
                )
            )["s"]
            now = utcnow()
            for page in pages:
                seq += 1
                values = [
                    session_id,
                    seq,
                    page.mode.value,
                    page.mode.value,
                    page.canvas,
                    page.canvas,
                    page.font_px,
                    page.has_cjk,
                    page.png,
                    Jsonb([line.to_json() for line in page.lines]),
                    page.text_tokens,
                    page.chars,
                    page.representation,
                    page.representation_backend,
                    now,
                    page.last_turn_seq,
                    page.last_turn_at,
                ]
                cols = columns
                if reuse_id is not None and page is pages[0]:
                    cols, values = "id, " + columns, [int(reuse_id), *values]
                marks = ", ".join(["%s"] * len(values))
                page_id = int(
                    one(db.execute(f"INSERT INTO pages ({cols}) VALUES ({marks}) RETURNING id", values))["id"]
                )
                ids.append(page_id)
                with db.cursor() as cur:
                    cur.executemany(
                        'INSERT INTO page_spans (page_id, turn_id, tenant, start, "end")'
                        " VALUES (%s, %s, %s, %s, %s)",
                        [(page_id, s.turn_id, tenant, s.start, s.end) for s in page.spans],
                    )
                    cur.executemany(
                        'INSERT INTO verbatim (page_id, tenant, kind, value, turn_id, "offset")'
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        [(page_id, tenant, v.kind, v.value, v.turn_id, v.offset) for v in page.verbatim],
                    )
            if fully_paged:
                db.execute("UPDATE turns SET paged = true WHERE id = ANY(%s)", (list(fully_paged),))
        return ids

    def unpage(self, page_id: int) -> list[int]:
        """Delete a page and mark the turns it held unpaged again; returns those turn ids.

        Call inside `transaction()` (paging does, with the session locked).
        """
        with self.transaction() as db:
            turn_ids = [
                r["turn_id"]
                for r in db.execute("SELECT turn_id FROM page_spans WHERE page_id = %s", (page_id,))
            ]
            db.execute("DELETE FROM pages WHERE id = %s", (page_id,))  # spans, verbatim, index cascade
            db.execute("UPDATE turns SET paged = false WHERE id = ANY(%s)", (turn_ids,))
            return turn_ids

    def _spans(self, page_ids: Sequence[int]) -> dict[int, list[Span]]:
        out: dict[int, list[Span]] = {pid: [] for pid in page_ids}
        for r in self._q(
            'SELECT page_id, turn_id, start, "end" FROM page_spans WHERE page_id = ANY(%s) ORDER BY turn_id',
            (list(page_ids),),
        ):
            out[r["page_id"]].append(Span(r["turn_id"], r["start"], r["end"]))
        return out

    @staticmethod
    def _page(row: dict, spans: Sequence[Span]) -> PageRecord:
        return PageRecord(
            id=row["id"],
            session_id=row["session_id"],
            seq=row["seq"],
            mode=Mode(row["mode"]),
            creation_mode=Mode(row["creation_mode"]),
            canvas=row["canvas"],
            creation_canvas=row["creation_canvas"],
            font_px=row["font_px"],
            has_cjk=row["has_cjk"],
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
        self._lock(session_id)
        rows = self._q(
            f"SELECT {self._PAGE_COLUMNS} FROM pages WHERE session_id = %s ORDER BY seq", (session_id,)
        )
        spans = self._spans([r["id"] for r in rows])
        return [self._page(r, spans[r["id"]]) for r in rows]

    def page(self, session_id: str, page_id: int) -> PageRecord:
        rows = self._q(
            f"SELECT {self._PAGE_COLUMNS} FROM pages WHERE id = %s AND session_id = %s",
            (int(page_id), session_id),
        )
        if not rows:
            raise PageNotFound(f"no page {page_id} in session {session_id!r}")
        return self._page(rows[0], self._spans([rows[0]["id"]])[rows[0]["id"]])

    def page_by_id(self, page_id: int) -> PageRecord:
        """A page whatever its session (for background decoding, which knows only ids)."""
        rows = self._q(f"SELECT {self._PAGE_COLUMNS} FROM pages WHERE id = %s", (int(page_id),))
        if not rows:
            raise PageNotFound(f"no page {page_id}")
        return self._page(rows[0], self._spans([rows[0]["id"]])[rows[0]["id"]])

    def page_blobs(self, page_id: int) -> tuple[bytes, list[LineBox], bytes | None, str | None]:
        """(png, layout on the creation canvas, representation, backend that made it)."""
        rows = self._q(
            "SELECT png, layout, representation, representation_backend FROM pages WHERE id = %s",
            (int(page_id),),
        )
        if not rows:
            raise PageNotFound(f"no page {page_id}")
        r = rows[0]
        rep = bytes(r["representation"]) if r["representation"] is not None else None
        lines = [LineBox.from_json(x) for x in r["layout"]]
        return bytes(r["png"]), lines, rep, r["representation_backend"]

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
                "UPDATE pages SET mode = %s, canvas = %s, png = %s, representation = %s,"
                " representation_backend = %s, aged_at = %s WHERE id = %s",
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
                "UPDATE pages SET mode = %s, canvas = %s, png = %s, representation = %s,"
                " representation_backend = %s, rehearsed_seq = %s WHERE id = %s",
                (mode.value, mode.canvas, png, representation, backend, int(at_seq), int(page_id)),
            )

    def verbatim(self, page_id: int) -> list[VerbatimItem]:
        return [
            VerbatimItem(r["kind"], r["value"], r["turn_id"], r["offset"])
            for r in self._q(
                'SELECT kind, value, turn_id, "offset" FROM verbatim WHERE page_id = %s ORDER BY id',
                (int(page_id),),
            )
        ]

    # -- decoded text cache ----------------------------------------------------------------

    def put_decoded(self, record: DecodedRecord, index_text: str) -> None:
        """Cache a decode and make `index_text` the page's searchable text (a page deleted or
        reopened meanwhile is skipped: its decode has nothing left to describe)."""
        with self.transaction() as db:
            page = db.execute(
                "SELECT session_id, tenant FROM pages WHERE id = %s FOR KEY SHARE", (record.page_id,)
            ).fetchone()
            if page is None:
                return
            db.execute(
                "DELETE FROM decoded WHERE page_id = %s AND mode = %s AND backend = %s AND fingerprint <> %s",
                (record.page_id, record.mode.value, record.backend, record.fingerprint),
            )
            db.execute(
                "INSERT INTO decoded (page_id, tenant, mode, backend, fingerprint, text, lines,"
                " confidence, seconds, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (page_id, mode, fingerprint) DO UPDATE SET backend = EXCLUDED.backend,"
                " text = EXCLUDED.text, lines = EXCLUDED.lines, confidence = EXCLUDED.confidence,"
                " seconds = EXCLUDED.seconds, created_at = EXCLUDED.created_at",
                (
                    record.page_id,
                    page["tenant"],
                    record.mode.value,
                    record.backend,
                    record.fingerprint,
                    record.text,
                    Jsonb(list(record.lines)) if record.lines is not None else None,
                    record.confidence,
                    record.seconds,
                    utcnow(),
                ),
            )
            db.execute(
                "INSERT INTO page_index (page_id, session_id, tenant, text) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (page_id) DO UPDATE SET text = EXCLUDED.text",
                (record.page_id, page["session_id"], page["tenant"], index_text),
            )

    def get_decoded(self, page_id: int, mode: Mode, fingerprint: str) -> DecodedRecord | None:
        rows = self._q(
            "SELECT * FROM decoded WHERE page_id = %s AND mode = %s AND fingerprint = %s",
            (int(page_id), mode.value, fingerprint),
        )
        if not rows:
            return None
        r = rows[0]
        return DecodedRecord(
            page_id=r["page_id"],
            mode=Mode(r["mode"]),
            backend=r["backend"],
            fingerprint=r["fingerprint"],
            text=r["text"],
            lines=tuple(r["lines"]) if r["lines"] is not None else None,
            confidence=r["confidence"],
            seconds=r["seconds"],
        )

    def search_candidates(self, session_id: str, terms: Sequence[str], limit: int) -> list[int]:
        """Pages whose indexed text holds any of `terms` as a substring, or a word close to one
        (pg_trgm word similarity, so OCR-garbled words count), most terms matched first."""
        usable = [t for t in terms if len(t) >= 3]
        if not usable:
            return []
        patterns = [
            "%" + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for t in usable
        ]
        rows = self._q(
            "SELECT i.page_id, SUM(CASE WHEN i.text ILIKE p.pattern THEN 1.0"
            "  ELSE word_similarity(p.term, i.text) END) AS score"
            " FROM page_index i"
            " JOIN unnest(%s::text[], %s::text[]) AS p(term, pattern)"
            "  ON i.text ILIKE p.pattern OR p.term <%% i.text"
            " WHERE i.session_id = %s"
            " GROUP BY i.page_id ORDER BY score DESC, i.page_id DESC LIMIT %s",
            (usable, patterns, session_id, int(limit)),
        )
        return [r["page_id"] for r in rows]

    def indexed_text(self, page_ids: Sequence[int]) -> dict[int, str]:
        rows = self._q("SELECT page_id, text FROM page_index WHERE page_id = ANY(%s)", (list(page_ids),))
        return {r["page_id"]: r["text"] for r in rows}

    def integrity_problems(self) -> list[str]:
        """Human-readable problems: pages without spans, turns paged onto no page."""
        problems = [
            f"page {r['id']} covers no turn"
            for r in self._q(
                "SELECT id FROM pages p WHERE NOT EXISTS (SELECT 1 FROM page_spans WHERE page_id = p.id)"
            )
        ]
        problems += [
            f"turn {r['id']} is marked paged but no page holds it"
            for r in self._q(
                "SELECT id FROM turns t WHERE paged AND NOT EXISTS (SELECT 1 FROM page_spans WHERE turn_id = t.id)"
            )
        ]
        problems += [
            f"turn {r['turn_id']} is on {r['n']} pages that overlap"
            for r in self._q(
                "SELECT a.turn_id, COUNT(*) AS n FROM page_spans a JOIN page_spans b"
                " ON a.turn_id = b.turn_id AND a.page_id < b.page_id"
                ' AND a.start < b."end" AND b.start < a."end" GROUP BY a.turn_id'
            )
        ]
        return problems
