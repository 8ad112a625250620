"""Decode jobs in PostgreSQL (pgqueuer: ``FOR UPDATE SKIP LOCKED``, heartbeats, dedupe keys) and
the registry of live workers.

One job per (page, mode, backend): its dedupe key keeps a second one out while it is queued or
being decoded, and the decoded-text cache (keyed by fingerprint) makes a later one a no-op, so a
page is never decoded twice for the same mode and fingerprint. A worker claims up to N jobs at
once and decodes them as one batch; while it works it renews their heartbeat, and a job whose
heartbeat is older than the lease (its worker died) is claimed again by another worker.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pgqueuer.adapters.drivers.psycopg import PsycopgDriver, SyncPsycopgDriver
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment
from pgqueuer.models import Job, TracebackRecord
from pgqueuer.queries import EntrypointExecutionParameter, Queries, SyncQueries
from pgqueuer.types import QueueEntrypoint, QueueManagerId
from psycopg.rows import DictRow

from ..errors import InputError
from ..store.postgres import one

if TYPE_CHECKING:
    import psycopg

    from ..store.postgres import PostgresStore

#: Key of the advisory lock that serialises installing the queue's tables.
INSTALL_LOCK = 0x6F7074696D7171
#: A worker that has not been seen for this long is taken for dead.
WORKER_TTL_S = 15.0
#: Priority of a job a recall is waiting for (background decodes have 0).
RECALL_PRIORITY = 10

_WORKERS_DDL = """
CREATE TABLE IF NOT EXISTS optimem_workers (
    id uuid PRIMARY KEY,
    backend text NOT NULL,
    fingerprint text NOT NULL,
    host text NOT NULL,
    pid integer NOT NULL,
    batch integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now(),
    pages integer NOT NULL DEFAULT 0
)
"""


def entrypoint(backend: str) -> str:
    """The queue name of a backend's decode jobs."""
    return f"optimem.decode.{backend}"


def dedupe_key(page_id: int, mode: str, backend: str) -> str:
    return f"{page_id}:{mode}:{backend}"


@dataclass(frozen=True)
class Claimed:
    """One claimed job: the page it asks for, and pgqueuer's row."""

    page_id: int
    mode: str
    job: Job


class DecodeQueue:
    """The replica's side: enqueue pages, see which workers are alive. Uses the store's pool."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store
        self.install()

    @classmethod
    def for_store(cls, store: Any) -> DecodeQueue:
        from ..store.postgres import PostgresStore

        if not isinstance(store, PostgresStore):
            raise InputError("decode='queue' needs a PostgreSQL store (postgresql://…): workers share it")
        return cls(store)

    def install(self) -> None:
        """Create pgqueuer's tables and the worker registry once (idempotent, race-free)."""
        with self.store.pooled() as db, db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (INSTALL_LOCK,))
            settings = QueryBuilderEnvironment().settings
            exists = one(db.execute("SELECT to_regclass(%s) AS t", (settings.queue_table,)))
            if exists["t"] is None:
                db.execute(QueryBuilderEnvironment().build_install_query(create_schema=False).encode())
            db.execute(_WORKERS_DDL)

    def enqueue(self, pages: list[tuple[int, str]], backend: str, *, priority: int = 0) -> int:
        """Queue (page id, mode) pairs for `backend`; pages already queued are skipped. Returns
        how many jobs were added."""
        if not pages:
            return 0
        with self.store.pooled() as conn:
            driver = SyncPsycopgDriver(conn)  # type: ignore[arg-type]  # it sets its own row factory
            ids = SyncQueries(driver).enqueue(
                [entrypoint(backend)] * len(pages),
                [json.dumps({"page_id": pid, "mode": mode}).encode() for pid, mode in pages],
                [priority] * len(pages),
                dedupe_key=[dedupe_key(pid, mode, backend) for pid, mode in pages],
                on_conflict="skip",
            )
        return sum(i is not None for i in ids)

    def pages_with_jobs(self, pages: list[tuple[int, str]], backend: str) -> set[int]:
        """Which of these (page id, mode) pairs have a job queued or being decoded."""
        table = QueryBuilderEnvironment().settings.queue_table
        keys = {dedupe_key(pid, mode, backend): pid for pid, mode in pages}
        with self.store.pooled() as conn:
            rows = conn.execute(
                f"SELECT dedupe_key FROM {table} WHERE dedupe_key = ANY(%s) AND status IN ('queued', 'picked')",
                (list(keys),),
            ).fetchall()
        return {keys[r["dedupe_key"]] for r in rows}

    def live_workers(self, backend: str) -> list[DictRow]:
        """Workers of `backend` seen within the TTL, newest first."""
        with self.store.pooled() as conn:
            return conn.execute(
                "SELECT id, fingerprint, host, pid, batch, pages, seen_at FROM optimem_workers"
                " WHERE backend = %s AND seen_at > now() - make_interval(secs => %s)"
                " ORDER BY seen_at DESC",
                (backend, WORKER_TTL_S),
            ).fetchall()

    def queued(self, backend: str | None = None) -> int:
        """Jobs queued or being decoded (for `backend`, or all)."""
        table = QueryBuilderEnvironment().settings.queue_table
        sql = f"SELECT COUNT(*) AS n FROM {table}"
        args: tuple = ()
        if backend is not None:
            sql += " WHERE entrypoint = %s"
            args = (entrypoint(backend),)
        with self.store.pooled() as conn:
            return int(one(conn.execute(sql, args))["n"])


class WorkerQueue:
    """The worker's side, on its own async connection: register, claim, heartbeat, finish."""

    def __init__(self, conn: psycopg.AsyncConnection, backend: str, fingerprint: str, batch: int) -> None:
        self.conn = conn
        self.driver = PsycopgDriver(conn)
        self.queries = Queries(self.driver)
        self.backend = backend
        self.fingerprint = fingerprint
        self.batch = batch
        self.id = uuid.uuid4()
        self.channel = QueryBuilderEnvironment().settings.channel

    async def register(self) -> None:
        # workers killed without a goodbye leave a row: drop those a day old (live ones beat)
        await self.conn.execute("DELETE FROM optimem_workers WHERE seen_at < now() - interval '1 day'")
        await self.conn.execute(
            "INSERT INTO optimem_workers (id, backend, fingerprint, host, pid, batch)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (self.id, self.backend, self.fingerprint, socket.gethostname(), os.getpid(), self.batch),
        )

    async def seen(self, pages: int = 0) -> None:
        await self.conn.execute(
            "UPDATE optimem_workers SET seen_at = now(), pages = pages + %s WHERE id = %s", (pages, self.id)
        )

    async def unregister(self) -> None:
        await self.conn.execute("DELETE FROM optimem_workers WHERE id = %s", (self.id,))

    async def claim(self, lease_s: float) -> list[Claimed]:
        """Up to `batch` jobs: queued ones, or ones whose worker has not beaten for `lease_s`."""
        jobs = await self.queries.dequeue(
            batch_size=self.batch,
            entrypoints={
                QueueEntrypoint(entrypoint(self.backend)): EntrypointExecutionParameter(concurrency_limit=0)
            },
            queue_manager_id=QueueManagerId(self.id),
            global_concurrency_limit=None,
            heartbeat_timeout=timedelta(seconds=lease_s),
        )
        out = []
        for job in jobs:
            body = json.loads(job.payload or b"{}")
            out.append(Claimed(int(body["page_id"]), str(body["mode"]), job))
        return out

    async def heartbeat(self, claimed: list[Claimed]) -> None:
        await self.queries.update_heartbeat([c.job.id for c in claimed])
        await self.seen()

    async def done(self, claimed: list[Claimed]) -> None:
        await self.queries.log_jobs([(c.job, "successful", None) for c in claimed])

    async def failed(
        self, claimed: list[Claimed], exc: Exception, retry_after_s: float, attempts: int
    ) -> None:
        """Retry each job after a pause, or log it as failed once it has had `attempts` tries."""
        for c in claimed:
            record = TracebackRecord.from_exception(exc, c.job.id, additional_context={"page_id": c.page_id})
            if c.job.attempts + 1 < attempts:
                await self.queries.retry_job(c.job, timedelta(seconds=retry_after_s), record)
            else:
                await self.queries.log_jobs([(c.job, "exception", record)])
