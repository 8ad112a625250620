"""Decode workers: claim page jobs from the PostgreSQL queue and decode them, N pages a batch.

A worker registers itself (backend, fingerprint, host, pid), claims up to `batch` jobs with
``FOR UPDATE SKIP LOCKED``, decodes the pages as one `Backend.decode_many` call, and writes the
text into the store's cache and search index. While it decodes it renews the jobs' heartbeat;
if it dies, another worker claims the same jobs once `lease_s` has passed. It sleeps on
PostgreSQL's NOTIFY (pgqueuer's trigger) between jobs and reconnects when the server restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import psycopg

from ..backends import Backend, get_backend
from ..errors import PageNotFound
from ..reading.decoding import LocalDecoder
from ..reading.proofread import warm_up as proofread_warm_up
from ..store.postgres import PostgresStore, redact
from .queue import Claimed, DecodeQueue, WorkerQueue

log = logging.getLogger("optimem.worker")


@dataclass
class WorkerStats:
    """What one worker did: batches and pages decoded, jobs that failed, seconds decoding."""

    batches: int = 0
    pages: int = 0
    failed: int = 0
    decode_seconds: float = 0.0


class Worker:
    """Decode jobs of one backend from the queue in `url` until stopped.

    Args:
        url: ``postgresql://…`` of the store the replicas use.
        backend: Backend name (``"cpu"``, ``"deepseek-ocr2"`` …) or instance.
        batch: Most pages claimed and decoded at once.
        backend_options: Options for the backend built by name (e.g. ``{"device": "cuda:1"}``,
            one worker per GPU).
        warmup: Pay the backend's one-time costs (compile, CUDA graphs) for batch 1 and
            `batch` before registering, so a worker reported ready decodes at full speed.
        lease_s: A claimed job whose heartbeat is older than this is claimed again.
        attempts: Tries per job before it is logged as failed.
    """

    def __init__(
        self,
        url: str,
        backend: str | Backend = "cpu",
        *,
        batch: int = 8,
        lease_s: float = 30.0,
        attempts: int = 3,
        poll_s: float = 1.0,
        backend_options: dict | None = None,
        warmup: bool = True,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be ≥ 1")
        self.url = url
        self.backend = (
            backend if isinstance(backend, Backend) else get_backend(backend, **(backend_options or {}))
        )
        self.warmup = warmup
        self.warmup_s: float | None = None
        self.batch = batch
        self.lease_s = lease_s
        self.attempts = attempts
        self.poll_s = poll_s
        self.store = PostgresStore(url, max_size=2)
        DecodeQueue(self.store)  # installs the queue's tables if this worker is the first
        self.decoder = LocalDecoder(self.store, lambda: self.backend, "now")
        self.stats = WorkerStats()
        self.stop = threading.Event()  # set() from a signal handler or another thread
        self.ready = threading.Event()  # set once registered: replicas see it alive from then on

    def close(self) -> None:
        self.store.close()
        self.backend.close()

    async def run(self, *, max_pages: int | None = None, idle_exit_s: float | None = None) -> WorkerStats:
        """Work until `stop` is set (or `max_pages` decoded, or idle for `idle_exit_s`)."""
        if self.warmup and self.warmup_s is None:  # engines, spelling index, compiled decoder
            t0 = time.perf_counter()
            await asyncio.to_thread(self.backend.warm_up, sorted({1, self.batch}))
            await asyncio.to_thread(proofread_warm_up)
            self.warmup_s = time.perf_counter() - t0
            log.info(
                "warmed up %s for batches 1 and %d in %.1f s", self.backend.name, self.batch, self.warmup_s
            )
        while not self.stop.is_set():
            try:
                await self._session(max_pages, idle_exit_s)
                break
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning("lost the database (%s); reconnecting in 1 s", exc)
                await asyncio.sleep(1.0)
        return self.stats

    async def _session(self, max_pages: int | None, idle_exit_s: float | None) -> None:
        fingerprint = self.decoder.fingerprint()
        async with (
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn,
            await psycopg.AsyncConnection.connect(self.url, autocommit=True) as listen,
        ):
            queue = WorkerQueue(conn, self.backend.name, fingerprint, self.batch)
            await queue.register()
            self.ready.set()
            log.info("worker %s: %s (%s), batch %d, on %s", queue.id, self.backend.name, fingerprint,
                     self.batch, redact(self.url))  # fmt: skip
            wake = asyncio.Event()
            await listen.execute(f"LISTEN {queue.channel}")
            listener = asyncio.create_task(self._listen(listen, wake))
            idle_since = time.monotonic()
            try:
                while not self.stop.is_set():
                    claimed = await queue.claim(self.lease_s)
                    if claimed:
                        await self._work(queue, claimed)
                        idle_since = time.monotonic()
                        if max_pages is not None and self.stats.pages >= max_pages:
                            return
                        continue
                    if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                        return
                    if listener.done():
                        listener.result()  # the listening connection broke: reconnect
                    await queue.seen()
                    wake.clear()  # new jobs NOTIFY; stale leases and `stop` are seen within poll_s
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), self.poll_s)
            finally:
                listener.cancel()
                with contextlib.suppress(Exception):
                    await queue.unregister()

    @staticmethod
    async def _listen(conn: psycopg.AsyncConnection, wake: asyncio.Event) -> None:
        async for _ in conn.notifies():
            wake.set()

    async def _work(self, queue: WorkerQueue, claimed: list[Claimed]) -> None:
        beat = asyncio.create_task(self._beat(queue, claimed))
        started = time.perf_counter()
        try:
            decoded = await asyncio.to_thread(self._decode, claimed)
        except Exception as exc:
            log.warning("batch of pages %s failed: %s", [c.page_id for c in claimed], exc)
            self.stats.failed += len(claimed)
            await queue.failed(claimed, exc, retry_after_s=5.0, attempts=self.attempts)
            return
        finally:
            beat.cancel()
        seconds = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.pages += decoded
        self.stats.decode_seconds += seconds
        log.info("claimed %d pages, decoded %d in %.1f s", len(claimed), decoded, seconds)
        await queue.done(claimed)
        await queue.seen(decoded)

    async def _beat(self, queue: WorkerQueue, claimed: list[Claimed]) -> None:
        while True:
            await asyncio.sleep(max(0.2, self.lease_s / 4))
            await queue.heartbeat(claimed)

    def _decode(self, claimed: list[Claimed]) -> int:
        """Decode the claimed pages that still exist and are not cached, as one batch; returns how many."""
        page_ids = []
        for pid in dict.fromkeys(c.page_id for c in claimed):
            try:
                page = self.store.page_by_id(pid)
            except PageNotFound:
                continue  # deleted or reopened since it was queued: nothing to decode
            if self.decoder.cached(page) is None:  # decoded meanwhile (by fingerprint): skip
                page_ids.append(pid)
        if page_ids:
            self.decoder.decode_here(page_ids)
        return len(page_ids)
