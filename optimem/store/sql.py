"""The store, written once on SQLAlchemy Core for SQLite and PostgreSQL.

Every statement is built from the tables of `optimem.store.schema`; what the two databases do
differently (how a connection is made and a write transaction begun, full-text search, byte
ordering of text, engine self-checks) sits behind the small functions of one module per
dialect, `optimem.store.sqlite` and `optimem.store.postgres` (`EngineDialect`).

A write that must land whole runs in `transaction()`: on SQLite a ``BEGIN IMMEDIATE``, on
PostgreSQL a transaction that takes the row lock of every session it touches (``SELECT … FOR
UPDATE``, the first time it touches it), so two writers on one session serialise on both
engines and never page one turn twice. Nested calls join the outer transaction; each thread
has its own. The schema is brought up to date by Alembic when the store opens
(`optimem.store.migrate`).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Row

from ..errors import DuplicateExternalId, PageNotFound, SessionNotFound, StoreError
from ..layout import LineBox, PageAids, Span, VerbatimItem
from ..modes import Mode
from . import migrate
from .base import (
    DecodedRecord,
    NewPage,
    PageBlobs,
    SessionInfo,
    StoredPage,
    StoredTurn,
    TurnTotals,
    iter_chunks,
    tenant_of,
    utcnow,
)
from .schema import (
    decoded,
    page_index,
    page_spans,
    pages,
    reading_aids,
    request_counts,
    sessions,
    turns,
    verbatim,
)


class EngineDialect(Protocol):
    """What differs between the databases; one module per dialect implements it."""

    def make_engine(self, url: str, **options: Any) -> tuple[Engine, str]:
        """The engine for `url`, and the URL to show in messages (no password)."""
        ...

    keep_readers: bool
    """Keep one reading connection per thread (cheap on SQLite) instead of one per read."""
    row_locks: bool
    """Whether a write transaction must lock the session's row (one write lock per database
    on SQLite makes it unneeded there)."""

    def read_options(self) -> dict[str, Any]:
        """Execution options of a connection that only reads, outside a transaction."""
        ...

    def write_options(self) -> dict[str, Any]:
        """Execution options of a connection that runs a write transaction."""
        ...

    def search(self, conn: Connection, session_id: str, terms: Sequence[str], limit: int) -> list[int]:
        """Pages of the session whose indexed text matches any term, best first."""
        ...

    def bytewise(self, column: ColumnElement[str]) -> ColumnElement[str]:
        """`column` ordered by its bytes (code points), as both engines then agree."""
        ...

    def problems(self, conn: Connection) -> list[str]:
        """The engine's own consistency check, as readable problems."""
        ...


#: `engine.dialect.name` → module implementing `EngineDialect`.
DIALECTS = {"sqlite": "optimem.store.sqlite", "postgresql": "optimem.store.postgres"}

#: What a second decode of the same page, mode and fingerprint replaces.
DECODE_UPDATES = ("backend", "text", "lines", "confidence", "seconds", "verified", "created_at")

#: The dialect's INSERT with ON CONFLICT (both spell `on_conflict_do_update`/`_do_nothing`).
UPSERTS: dict[str, Callable[..., Any]] = {"sqlite": sqlite_dialect.insert, "postgresql": pg_dialect.insert}

_PAGE_COLUMNS = [
    c
    for c in pages.c
    if c.name not in ("png", "layout", "representation", "representation_backend", "tenant")
]


class Q:
    """The hot reads, built once: building and hashing a statement costs more than SQLite
    takes to run it."""

    session = select(sessions.c.id).where(sessions.c.id == bindparam("session_id"))
    turns_of = select(turns).where(turns.c.session_id == bindparam("session_id")).order_by(turns.c.seq)
    turns_paged = turns_of.where(turns.c.paged == bindparam("paged"))
    turn_ids = (
        select(turns.c.id)
        .where(turns.c.session_id == bindparam("session_id"), turns.c.seq > bindparam("after"))
        .order_by(turns.c.seq)
    )
    last_turn_seq = select(func.coalesce(func.max(turns.c.seq), 0)).where(
        turns.c.session_id == bindparam("session_id")
    )
    last_page_seq = select(func.coalesce(func.max(pages.c.seq), 0)).where(
        pages.c.session_id == bindparam("session_id")
    )
    add_turns = insert(turns)
    add_turn = insert(turns).returning(turns.c.id)
    add_page = insert(pages).returning(pages.c.id)
    add_spans = insert(page_spans)
    add_verbatim = insert(verbatim)
    add_aids = insert(reading_aids)
    #: the page a decode describes, kept from deletion until the decode is written
    page_to_describe = (
        select(pages.c.session_id, pages.c.tenant)
        .where(pages.c.id == bindparam("page_id"))
        .with_for_update(read=True, key_share=True)
    )
    older_versions = delete(decoded).where(
        decoded.c.page_id == bindparam("page_id"),
        decoded.c.mode == bindparam("mode"),
        decoded.c.backend == bindparam("backend"),
        decoded.c.fingerprint != bindparam("fingerprint"),
    )
    unindex = delete(page_index).where(page_index.c.page_id == bindparam("page_id"))
    index = insert(page_index)
    turns_by_id = turns_of.where(turns.c.id.in_(bindparam("ids", expanding=True)))
    turn_totals = select(
        func.count().label("n_turns"),
        func.coalesce(func.max(turns.c.seq), 0).label("last_seq"),
        func.coalesce(func.sum(turns.c.text_tokens), 0).label("text_tokens"),
        func.coalesce(func.sum(case((turns.c.paged.is_(False), turns.c.text_tokens), else_=0)), 0).label(
            "unpaged_tokens"
        ),
    ).where(turns.c.session_id == bindparam("session_id"))
    external_ids = select(turns.c.external_id, turns.c.id).where(
        turns.c.session_id == bindparam("session_id"),
        turns.c.external_id.in_(bindparam("ids", expanding=True)),
    )
    span_ends = (
        select(page_spans.c.turn_id, func.max(page_spans.c.end).label("end"))
        .where(page_spans.c.turn_id.in_(bindparam("ids", expanding=True)))
        .group_by(page_spans.c.turn_id)
    )
    spans = (
        select(page_spans.c.page_id, page_spans.c.turn_id, page_spans.c.start, page_spans.c.end)
        .where(page_spans.c.page_id.in_(bindparam("ids", expanding=True)))
        .order_by(page_spans.c.turn_id)
    )
    pages_of = (
        select(*_PAGE_COLUMNS).where(pages.c.session_id == bindparam("session_id")).order_by(pages.c.seq)
    )
    page_by_id = select(*_PAGE_COLUMNS).where(pages.c.id == bindparam("page_id"))
    page_in_session = page_by_id.where(pages.c.session_id == bindparam("session_id"))
    blobs = select(pages.c.png, pages.c.layout, pages.c.representation, pages.c.representation_backend).where(
        pages.c.id == bindparam("page_id")
    )
    verbatim_of = (
        select(verbatim.c.kind, verbatim.c.value, verbatim.c.turn_id, verbatim.c.offset)
        .where(verbatim.c.page_id == bindparam("page_id"))
        .order_by(verbatim.c.id)
    )
    aids = select(reading_aids.c.checks, reading_aids.c.lexicon, reading_aids.c.lexicon_complete).where(
        reading_aids.c.page_id == bindparam("page_id")
    )
    decoded_text = select(decoded).where(
        decoded.c.page_id == bindparam("page_id"),
        decoded.c.mode == bindparam("mode"),
        decoded.c.fingerprint == bindparam("fingerprint"),
    )
    indexed = select(page_index.c.page_id, page_index.c.text).where(
        page_index.c.page_id.in_(bindparam("ids", expanding=True))
    )


def dialect_of(url: str) -> str:
    """The dialect name of a store URL: a path, sqlite:///…, :memory: or postgresql://…."""
    if "://" not in url:
        return "sqlite"
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower()
    return {"postgres": "postgresql"}.get(scheme, scheme)


class SqlStore:
    """optimem's persistence on SQLite or PostgreSQL. Safe to share between threads, and
    (through the database) between processes and machines."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        name = dialect_of(url)
        if name not in DIALECTS:
            raise StoreError(f"unsupported database URL scheme {name!r}")
        self.dialect = cast(EngineDialect, importlib.import_module(DIALECTS[name]))
        self.engine, self.display_url = self.dialect.make_engine(url, **engine_options)
        self._upsert = UPSERTS[name]
        self._add_session = self._upsert(sessions).on_conflict_do_nothing(index_elements=[sessions.c.id])
        put = self._upsert(decoded)
        self._put_decoded = put.on_conflict_do_update(
            index_elements=[decoded.c.page_id, decoded.c.mode, decoded.c.fingerprint],
            set_={c: put.excluded[c] for c in DECODE_UPDATES},
        )
        self._local = threading.local()
        self._readers: list[Connection] = []
        self._readers_lock = threading.Lock()
        try:
            with self.transaction() as conn:
                migrate.upgrade(conn, self.display_url)
        except BaseException:
            self.engine.dispose()
            raise

    # -- connections and transactions ------------------------------------------------------

    def _error(self, exc: sa_exc.DBAPIError) -> Exception:
        """A database error as optimem's: a lost or locked database is a StoreError."""
        if isinstance(exc, sa_exc.IntegrityError) and (
            "turns_external" in str(exc.orig) or "turns.external_id" in str(exc.orig)
        ):
            return DuplicateExternalId(
                "an external_id is already stored in this session: retry with skip_existing=True"
            )
        if isinstance(exc, sa_exc.OperationalError):
            return StoreError(f"database {self.display_url} unavailable: {exc.orig}")
        return StoreError(f"database {self.display_url}: {exc.orig}")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (sa_exc.IntegrityError, sa_exc.OperationalError) as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _conn(self) -> Iterator[Connection]:
        """The thread's transaction connection, or a reading one outside one."""
        conn = getattr(self._local, "conn", None) or self._reader()
        if conn is not None:
            try:
                yield conn
            except (sa_exc.IntegrityError, sa_exc.OperationalError) as exc:
                self._drop_reader(conn)
                raise self._error(exc) from exc
            return
        with (
            self._errors(),
            self.engine.connect().execution_options(**self.dialect.read_options()) as conn,
        ):
            yield conn

    def _reader(self) -> Connection | None:
        """The thread's own reading connection, where the dialect keeps one (SQLite)."""
        if not self.dialect.keep_readers:
            return None
        reader: Connection | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = self.engine.connect().execution_options(**self.dialect.read_options())
            self._local.reader = reader
            with self._readers_lock:
                self._readers.append(reader)
        return reader

    def _drop_reader(self, conn: Connection) -> None:
        """A reading connection that failed is not used again."""
        if conn is getattr(self._local, "reader", None):
            self._local.reader = None
            with self._readers_lock:
                self._readers.remove(conn)
            conn.close()

    def _rows(self, statement: Any, params: dict[str, Any] | None = None) -> Sequence[Row[Any]]:
        """The rows of one read (in the thread's transaction, if one is open)."""
        conn = getattr(self._local, "conn", None) or self._reader()
        if conn is None:
            with self._conn() as fresh:
                return fresh.execute(statement, params).all()
        try:
            return conn.execute(statement, params).all()
        except (sa_exc.IntegrityError, sa_exc.OperationalError) as exc:
            self._drop_reader(conn)
            raise self._error(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction (nested calls join the outer one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            yield conn
            return
        with (
            self._errors(),
            self.engine.connect().execution_options(**self.dialect.write_options()) as conn,
            conn.begin(),
        ):
            self._local.conn, self._local.locked = conn, set()
            try:
                yield conn
            finally:
                self._local.conn = None

    def _lock(self, session_id: str) -> None:
        """Inside a transaction: hold the session's row lock until it ends (once per session;
        SQLite's write transaction holds the whole database already)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or session_id in self._local.locked or not self.dialect.row_locks:
            return
        conn.execute(select(sessions.c.id).where(sessions.c.id == session_id).with_for_update())
        self._local.locked.add(session_id)

    def close(self) -> None:
        """Close every thread's reading connection and every pooled one."""
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()
        self._local = threading.local()
        self.engine.dispose()

    def schema_version(self) -> str:
        with self._conn() as conn:
            return migrate.current_revision(conn) or ""

    def count_request(self, key: str, minute: int) -> tuple[int, int]:
        with self.transaction() as conn:
            stmt = self._upsert(request_counts).values(key=key, minute=minute, n=1)
            stmt = stmt.on_conflict_do_update(
                index_elements=[request_counts.c.key, request_counts.c.minute],
                set_={"n": request_counts.c.n + 1},
            ).returning(request_counts.c.n)
            n = int(conn.execute(stmt).scalar_one())
            if n == 1:  # a new minute for this key: forget what no limit looks at any more
                conn.execute(delete(request_counts).where(request_counts.c.minute < minute - 1))
            before = conn.execute(
                select(request_counts.c.n).where(
                    request_counts.c.key == key, request_counts.c.minute == minute - 1
                )
            ).scalar()
        return n, int(before or 0)

    # -- sessions --------------------------------------------------------------------------

    def session_ids(self, prefix: str | None = None) -> list[str]:
        stmt = select(sessions.c.id).order_by(sessions.c.created_at, self.dialect.bytewise(sessions.c.id))
        if prefix:
            stmt = stmt.where(sessions.c.id.startswith(prefix, autoescape=True))
        # LIKE folds ASCII case on SQLite: keep the exact prefix only
        return [r.id for r in self._rows(stmt) if not prefix or r.id.startswith(prefix)]

    def has_session(self, session_id: str) -> bool:
        return bool(self._rows(Q.session, {"session_id": session_id}))

    def require_session(self, session_id: str) -> None:
        if not self.has_session(session_id):
            raise SessionNotFound(f"no session {session_id!r}")

    def session_info(self, session_id: str) -> SessionInfo:
        of_session = turns.c.session_id == sessions.c.id
        stmt = select(
            sessions.c.created_at,
            select(func.count()).where(of_session).scalar_subquery().label("turns"),
            select(func.count()).where(pages.c.session_id == sessions.c.id).scalar_subquery().label("pages"),
            select(func.max(turns.c.created_at)).where(of_session).scalar_subquery().label("last"),
        ).where(sessions.c.id == session_id)
        rows = self._rows(stmt)
        if not rows:
            raise SessionNotFound(f"no session {session_id!r}")
        r = rows[0]
        return SessionInfo(session_id, r.created_at, r.turns, r.pages, r.last)

    def delete_session(self, session_id: str) -> dict[str, int]:
        """Delete the session and everything of it; returns row counts by kind."""
        with self.transaction() as conn:
            self._lock(session_id)
            if not conn.execute(select(sessions.c.id).where(sessions.c.id == session_id)).first():
                raise SessionNotFound(f"no session {session_id!r}")
            its_pages = select(pages.c.id).where(pages.c.session_id == session_id)

            def count(table: Any, where: Any) -> int:
                return int(conn.execute(select(func.count()).select_from(table).where(where)).scalar_one())

            out = {
                "turns": count(turns, turns.c.session_id == session_id),
                "pages": count(pages, pages.c.session_id == session_id),
                "decoded": count(decoded, decoded.c.page_id.in_(its_pages)),
                "verbatim": count(verbatim, verbatim.c.page_id.in_(its_pages)),
            }
            conn.execute(delete(page_index).where(page_index.c.page_id.in_(its_pages)))
            conn.execute(delete(pages).where(pages.c.session_id == session_id))  # the rest cascades
            conn.execute(delete(turns).where(turns.c.session_id == session_id))
            conn.execute(delete(sessions).where(sessions.c.id == session_id))
            return out

    # -- turns -----------------------------------------------------------------------------

    def add_turns(self, session_id: str, rows: Sequence[dict]) -> list[int]:
        """Append turns in order; returns their ids. All or nothing."""
        tenant = tenant_of(session_id)
        with self.transaction() as conn:
            conn.execute(
                self._add_session,
                {"id": session_id, "tenant": tenant, "created_at": utcnow(), "metadata": {}},
            )
            self._lock(session_id)
            seq = conn.execute(Q.last_turn_seq, {"session_id": session_id}).scalar_one()
            if not rows:
                return []
            values = [
                {
                    "session_id": session_id,
                    "tenant": tenant,
                    "seq": seq + i,
                    "role": row["role"],
                    "name": row.get("name"),
                    "content": row["content"],
                    "content_sha256": row["sha256"],
                    "chars": len(row["content"]),
                    "text_tokens": row["text_tokens"],
                    "created_at": row["created_at"],
                    "metadata": row.get("metadata") or {},
                    "paged": False,
                    "external_id": row.get("external_id"),
                }
                for i, row in enumerate(rows, start=1)
            ]
            if len(values) == 1:  # one turn (a chat's usual call): its id comes back with it
                return [int(conn.execute(Q.add_turn, values[0]).scalar_one())]
            conn.execute(Q.add_turns, values)
            # the session is locked: its new turns are the seqs just written, in order
            new = conn.execute(Q.turn_ids, {"session_id": session_id, "after": seq}).scalars()
            return [int(i) for i in new]

    def lookup_external_ids(self, session_id: str, external_ids: Iterable[str]) -> dict[str, int]:
        wanted = list(dict.fromkeys(external_ids))
        out: dict[str, int] = {}
        for chunk in iter_chunks(wanted):
            rows = self._rows(Q.external_ids, {"session_id": session_id, "ids": list(chunk)})
            out.update({r.external_id: r.id for r in rows})
        return out

    @staticmethod
    def _turn(row: Row[Any]) -> StoredTurn:
        return StoredTurn(
            id=row.id,
            session_id=row.session_id,
            seq=row.seq,
            role=row.role,
            content=row.content,
            name=row.name,
            text_tokens=row.text_tokens,
            chars=row.chars,
            created_at=row.created_at,
            metadata=row.metadata,
            paged=bool(row.paged),
            external_id=row.external_id,
        )

    def turns(
        self, session_id: str, *, paged: bool | None = None, ids: Iterable[int] | None = None
    ) -> list[StoredTurn]:
        self._lock(session_id)
        if ids is not None:
            found: list[Row[Any]] = []
            for chunk in iter_chunks(sorted(set(ids))):
                found += self._rows(Q.turns_by_id, {"session_id": session_id, "ids": list(chunk)})
            rows: Sequence[Row[Any]] = sorted(found, key=lambda r: r.seq)
            if paged is not None:
                rows = [r for r in rows if bool(r.paged) is paged]
        elif paged is None:
            rows = self._rows(Q.turns_of, {"session_id": session_id})
        else:
            rows = self._rows(Q.turns_paged, {"session_id": session_id, "paged": paged})
        return [self._turn(r) for r in rows]

    def turn_totals(self, session_id: str) -> TurnTotals:
        self._lock(session_id)
        row = self._rows(Q.turn_totals, {"session_id": session_id})[0]
        return TurnTotals(int(row.n_turns), int(row.last_seq), int(row.text_tokens), int(row.unpaged_tokens))

    def span_ends(self, turn_ids: Sequence[int]) -> dict[int, int]:
        """Turn id → offset just past the last character of it already on a page."""
        out: dict[int, int] = {}
        for chunk in iter_chunks(list(turn_ids)):
            out.update({r.turn_id: r.end for r in self._rows(Q.span_ends, {"ids": list(chunk)})})
        return out

    def drop_archive(self, session_id: str) -> int:
        """Forget the source text of paged turns, in the turns and in the pages' layouts (line
        geometry and character counts stay); returns how many turns were cleared."""
        with self.transaction() as conn:
            self._lock(session_id)
            cleared = conn.execute(
                update(turns)
                .where(turns.c.session_id == session_id, turns.c.paged, turns.c.content.isnot(None))
                .values(content=None)
            ).rowcount
            if cleared:
                gone = set(
                    conn.execute(
                        select(turns.c.id).where(turns.c.session_id == session_id, turns.c.content.is_(None))
                    ).scalars()
                )
                rows = conn.execute(
                    select(pages.c.id, pages.c.layout).where(pages.c.session_id == session_id)
                )
                for page_id, layout in rows.all():
                    for line in layout:
                        if line[5] in gone:
                            line[4] = ""
                    conn.execute(update(pages).where(pages.c.id == page_id).values(layout=layout))
            return int(cleared)

    # -- pages -----------------------------------------------------------------------------

    def insert_pages(
        self,
        session_id: str,
        new_pages: Sequence[NewPage],
        fully_paged: Sequence[int],
        reuse_id: int | None = None,
    ) -> list[int]:
        """Write pages with their spans, verbatim strings and reading aids; mark `fully_paged`
        turns paged.

        `reuse_id` gives the first page the id of a page just reopened, so ids users hold stay
        valid. Call inside `transaction()` together with the read that chose the turns.
        """
        ids: list[int] = []
        tenant = tenant_of(session_id)
        with self.transaction() as conn:
            self._lock(session_id)
            seq = conn.execute(Q.last_page_seq, {"session_id": session_id}).scalar_one()
            now = utcnow()
            for i, page in enumerate(new_pages):
                row: dict[str, Any] = {
                    "session_id": session_id,
                    "tenant": tenant,
                    "seq": seq + i + 1,
                    "mode": page.mode.value,
                    "creation_mode": page.mode.value,
                    "canvas": page.canvas,
                    "creation_canvas": page.canvas,
                    "font_px": page.font_px,
                    "has_cjk": page.has_cjk,
                    "png": page.png,
                    "layout": [line.to_json() for line in page.lines],
                    "text_tokens": page.text_tokens,
                    "chars": page.chars,
                    "representation": page.representation,
                    "representation_backend": page.representation_backend,
                    "created_at": now,
                    "last_turn_seq": page.last_turn_seq,
                    "last_turn_at": page.last_turn_at,
                }
                if i == 0 and reuse_id is not None:
                    row["id"] = int(reuse_id)
                page_id = int(conn.execute(Q.add_page, row).scalar_one())
                ids.append(page_id)
                self._write_page_parts(conn, page_id, tenant, page)
            for chunk in iter_chunks(list(fully_paged)):
                conn.execute(update(turns).where(turns.c.id.in_(chunk)).values(paged=True))
        return ids

    @staticmethod
    def _write_page_parts(conn: Connection, page_id: int, tenant: str, page: NewPage) -> None:
        spans = [
            {"page_id": page_id, "turn_id": s.turn_id, "tenant": tenant, "start": s.start, "end": s.end}
            for s in page.spans
        ]
        if spans:
            conn.execute(Q.add_spans, spans)
        items = [
            {
                "page_id": page_id,
                "tenant": tenant,
                "kind": v.kind,
                "value": v.value,
                "turn_id": v.turn_id,
                "offset": v.offset,
            }
            for v in page.verbatim
        ]
        if items:
            conn.execute(Q.add_verbatim, items)
        if page.aids is not None:
            conn.execute(
                Q.add_aids,
                {
                    "page_id": page_id,
                    "tenant": tenant,
                    "checks": page.aids.checks,
                    "lexicon": list(page.aids.lexicon),
                    "lexicon_complete": page.aids.lexicon_complete,
                },
            )

    def unpage(self, page_id: int) -> list[int]:
        """Delete a page and mark the turns it held unpaged again; returns those turn ids.

        Paging uses it to take back a half-empty last page and typeset its turns with newer
        ones (a turn split across pages keeps its earlier pieces). Call inside `transaction()`.
        """
        with self.transaction() as conn:
            turn_ids = list(
                conn.execute(select(page_spans.c.turn_id).where(page_spans.c.page_id == page_id)).scalars()
            )
            conn.execute(delete(page_index).where(page_index.c.page_id == page_id))
            conn.execute(delete(pages).where(pages.c.id == page_id))  # spans, aids, decoded cascade
            for chunk in iter_chunks(turn_ids):
                conn.execute(update(turns).where(turns.c.id.in_(chunk)).values(paged=False))
            return turn_ids

    def _spans(self, page_ids: Sequence[int]) -> dict[int, list[Span]]:
        out: dict[int, list[Span]] = {pid: [] for pid in page_ids}
        for chunk in iter_chunks(list(page_ids)):
            for r in self._rows(Q.spans, {"ids": list(chunk)}):
                out[r.page_id].append(Span(r.turn_id, r.start, r.end))
        return out

    @staticmethod
    def _page(row: Row[Any], spans: Sequence[Span]) -> StoredPage:
        return StoredPage(
            id=row.id,
            session_id=row.session_id,
            seq=row.seq,
            mode=Mode(row.mode),
            creation_mode=Mode(row.creation_mode),
            canvas=row.canvas,
            creation_canvas=row.creation_canvas,
            font_px=row.font_px,
            has_cjk=bool(row.has_cjk),
            text_tokens=row.text_tokens,
            chars=row.chars,
            created_at=row.created_at,
            aged_at=row.aged_at,
            last_turn_seq=row.last_turn_seq,
            last_turn_at=row.last_turn_at,
            spans=tuple(spans),
            rehearsed_seq=row.rehearsed_seq,
        )

    def _pages(self, statement: Any, params: dict[str, Any]) -> list[StoredPage]:
        rows = self._rows(statement, params)
        spans = self._spans([r.id for r in rows])
        return [self._page(r, spans[r.id]) for r in rows]

    def pages(self, session_id: str) -> list[StoredPage]:
        self._lock(session_id)
        return self._pages(Q.pages_of, {"session_id": session_id})

    def page(self, session_id: str, page_id: int) -> StoredPage:
        found = self._pages(Q.page_in_session, {"page_id": int(page_id), "session_id": session_id})
        if not found:
            raise PageNotFound(f"no page {page_id} in session {session_id!r}")
        return found[0]

    def page_by_id(self, page_id: int) -> StoredPage:
        """A page whatever its session (for background decoding, which knows only ids)."""
        found = self._pages(Q.page_by_id, {"page_id": int(page_id)})
        if not found:
            raise PageNotFound(f"no page {page_id}")
        return found[0]

    def page_blobs(self, page_id: int) -> PageBlobs:
        """The page's image, layout on the creation canvas and stored representation."""
        rows = self._rows(Q.blobs, {"page_id": int(page_id)})
        if not rows:
            raise PageNotFound(f"no page {page_id}")
        r = rows[0]
        return PageBlobs(
            png=bytes(r.png),
            layout=[LineBox.from_json(x) for x in r.layout],
            representation=bytes(r.representation) if r.representation is not None else None,
            representation_backend=r.representation_backend,
        )

    def set_page_mode(
        self,
        page_id: int,
        mode: Mode,
        png: bytes,
        representation: bytes | None,
        backend: str | None,
    ) -> None:
        self._set_image(page_id, mode, png, representation, backend, aged_at=utcnow())

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
        self._set_image(page_id, mode, png, representation, backend, rehearsed_seq=int(at_seq))

    def _set_image(
        self,
        page_id: int,
        mode: Mode,
        png: bytes,
        representation: bytes | None,
        backend: str | None,
        **also: Any,
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                update(pages)
                .where(pages.c.id == int(page_id))
                .values(
                    mode=mode.value,
                    canvas=mode.canvas,
                    png=png,
                    representation=representation,
                    representation_backend=backend,
                    **also,
                )
            )

    def verbatim(self, page_id: int) -> list[VerbatimItem]:
        rows = self._rows(Q.verbatim_of, {"page_id": int(page_id)})
        return [VerbatimItem(r.kind, r.value, r.turn_id, r.offset) for r in rows]

    def reading_aids(self, page_id: int) -> PageAids | None:
        """The page's line checks and rare words, or None for a page kept without them."""
        rows = self._rows(Q.aids, {"page_id": int(page_id)})
        if not rows:
            return None
        r = rows[0]
        return PageAids(bytes(r.checks), tuple(r.lexicon), bool(r.lexicon_complete))

    # -- decoded text cache ----------------------------------------------------------------

    def put_decoded(self, record: DecodedRecord, index_text: str) -> None:
        """Cache a decode and make `index_text` the page's searchable text. A page deleted or
        reopened meanwhile is skipped (its decode has nothing left to describe), and the text
        an older version of the same backend read at this mode is dropped."""
        key = {
            "page_id": record.page_id,
            "mode": record.mode.value,
            "backend": record.backend,
            "fingerprint": record.fingerprint,
        }
        with self.transaction() as conn:
            page = conn.execute(Q.page_to_describe, {"page_id": record.page_id}).first()
            if page is None:
                return
            conn.execute(Q.older_versions, key)
            conn.execute(
                self._put_decoded,
                key
                | {
                    "tenant": page.tenant,
                    "text": record.text,
                    "lines": list(record.lines) if record.lines is not None else None,
                    "confidence": record.confidence,
                    "seconds": record.seconds,
                    "verified": record.verified,
                    "created_at": utcnow(),
                },
            )
            conn.execute(Q.unindex, {"page_id": record.page_id})
            conn.execute(
                Q.index,
                {
                    "page_id": record.page_id,
                    "session_id": page.session_id,
                    "tenant": page.tenant,
                    "text": index_text,
                },
            )

    def get_decoded(self, page_id: int, mode: Mode, fingerprint: str) -> DecodedRecord | None:
        rows = self._rows(
            Q.decoded_text, {"page_id": int(page_id), "mode": mode.value, "fingerprint": fingerprint}
        )
        if not rows:
            return None
        r = rows[0]
        return DecodedRecord(
            page_id=r.page_id,
            mode=Mode(r.mode),
            backend=r.backend,
            fingerprint=r.fingerprint,
            text=r.text,
            lines=tuple(r.lines) if r.lines is not None else None,
            confidence=r.confidence,
            seconds=r.seconds,
            verified=r.verified,
        )

    def search_candidates(self, session_id: str, terms: Sequence[str], limit: int) -> list[int]:
        """Pages whose indexed text holds any of `terms` (3 characters or more), best first:
        a trigram substring match on SQLite, substring or close word (pg_trgm) on PostgreSQL."""
        usable = [t for t in terms if len(t) >= 3]
        if not usable:
            return []
        with self._conn() as conn:
            return self.dialect.search(conn, session_id, usable, int(limit))

    def indexed_text(self, page_ids: Sequence[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        for chunk in iter_chunks(list(page_ids)):
            out.update({r.page_id: r.text for r in self._rows(Q.indexed, {"ids": list(chunk)})})
        return out

    def integrity_problems(self) -> list[str]:
        """Human-readable problems: the engine's own check, pages without spans, turns paged
        onto no page, a turn's characters on two pages."""
        a, b = page_spans.alias("a"), page_spans.alias("b")
        covered = exists().where(page_spans.c.page_id == pages.c.id)
        held = exists().where(page_spans.c.turn_id == turns.c.id)
        overlap = (
            select(a.c.turn_id, func.count().label("n"))
            .join(b, (a.c.turn_id == b.c.turn_id) & (a.c.page_id < b.c.page_id))
            .where(a.c.start < b.c.end, b.c.start < a.c.end)
            .group_by(a.c.turn_id)
        )
        with self._conn() as conn:
            problems = self.dialect.problems(conn)
            problems += [
                f"page {pid} covers no turn"
                for pid in conn.execute(select(pages.c.id).where(~covered)).scalars()
            ]
            problems += [
                f"turn {tid} is marked paged but no page holds it"
                for tid in conn.execute(select(turns.c.id).where(turns.c.paged, ~held)).scalars()
            ]
            problems += [f"turn {r.turn_id} is on {r.n} pages that overlap" for r in conn.execute(overlap)]
        return problems
