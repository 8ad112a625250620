"""The queue strategy: pages are read by `optimem worker` processes through PostgreSQL.

A memory opened with ``decode="queue"`` writes a job per page into the database's queue
(`optimem.workers.queue`); workers read the pages and write the text into the shared cache. A
recall waits for its page's job (queued at recall priority), and reads the page in this process
where no worker is alive, the workers failed it or they are too slow (`QUEUE_WAIT_S`), leaving a
note that says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ..backends import Backend
from ..errors import PageNotFound
from ..reading.decoding import Decoder, DecodeWhen
from ..store import DecodedRecord, Store, StoredPage
from .queue import RECALL_PRIORITY, DecodeQueue

log = logging.getLogger("optimem")

#: How long a recall waits for a worker to decode its page before decoding it inline.
QUEUE_WAIT_S = 300.0


class QueueDecoder(Decoder):
    """Reads pages through the workers' queue; see the module docstring."""

    when: DecodeWhen = "queue"

    def __init__(
        self,
        store: Store,
        backend: Callable[[], Backend],
        *,
        backend_name: Callable[[], str] | None = None,
    ) -> None:
        super().__init__(store, backend, backend_name=backend_name)
        self.queue = DecodeQueue.for_store(store)
        self._queued: set[int] = set()
        self._decoded_here = False

    def schedule(self, page_ids: Sequence[int], *, force_background: bool = False) -> None:
        if page_ids:
            self._enqueue(page_ids)

    def decode(self, page_ids: Sequence[int], *, refresh: bool = False) -> dict[int, DecodedRecord]:
        """Wait for the workers to decode these pages, or decode inline where none is alive;
        `refresh` reads them again in this process (an explicit request to read again)."""
        if not refresh:
            return self._decode_queue(page_ids)
        self._decoded_here = True
        return self.decode_here(page_ids, refresh=True)

    def cached(self, page: StoredPage) -> DecodedRecord | None:
        return self._cached_queue(page)

    def pending(self) -> int:
        """Jobs of this backend in the queue, whoever scheduled them."""
        return self.queue.queued(self._backend_name())

    def wait(self, timeout: float | None = None) -> bool:
        return self._wait_queue(timeout)

    def _enqueue(self, page_ids: Sequence[int], *, priority: int = 0) -> None:
        pages = [self.store.page_by_id(pid) for pid in page_ids]
        self.queue.enqueue([(p.id, p.mode.value) for p in pages], self._backend_name(), priority=priority)
        with self._lock:
            self._queued.update(page_ids)

    def _fingerprints(self) -> list[str]:
        """Fingerprints whose text counts as this backend's: the live workers', else our own."""
        found = [w["fingerprint"] for w in self.queue.live_workers(self._backend_name())]
        if self._decoded_here or not found:
            found.append(self.fingerprint())
        return list(dict.fromkeys(found))

    def _cached_queue(self, page: StoredPage) -> DecodedRecord | None:
        for fingerprint in self._fingerprints():
            hit = self.store.get_decoded(page.id, page.mode, fingerprint)
            if hit is not None:
                return hit
        return None

    def _decode_queue(
        self, page_ids: Sequence[int], timeout: float = QUEUE_WAIT_S, *, inline_when_slow: bool = True
    ) -> dict[int, DecodedRecord]:
        out: dict[int, DecodedRecord] = {}
        waiting = list(dict.fromkeys(page_ids))
        name = self._backend_name()
        enqueued = False
        deadline = time.monotonic() + timeout
        delay = 0.02
        while waiting:
            # read before the cache: a worker writes its text before it leaves the registry or
            # finishes its job, so a page neither cached nor queued here has no job coming
            alive = bool(self.queue.live_workers(name))
            queued = self.queue.pages_with_jobs(self._keys(waiting), name) if enqueued else None
            for pid in list(waiting):
                hit = self._cached_queue(self.store.page_by_id(pid))
                if hit is not None:
                    out[pid] = hit
                    waiting.remove(pid)
            if not waiting:
                break
            late = time.monotonic() > deadline
            if late and not inline_when_slow:
                break
            if late or not alive:
                out.update(
                    self._inline(waiting, "workers too slow" if late else "no optimem worker is alive")
                )
                break
            failed = [pid for pid in waiting if queued is not None and pid not in queued]
            if failed:
                out.update(self._inline(failed, "the workers failed to decode it"))
                waiting = [pid for pid in waiting if pid not in failed]
                continue
            if not enqueued:
                self._enqueue(waiting, priority=RECALL_PRIORITY)
                enqueued = True
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        return out

    def _keys(self, page_ids: Sequence[int]) -> list[tuple[int, str]]:
        return [(p.id, p.mode.value) for p in map(self.store.page_by_id, page_ids)]

    def _inline(self, page_ids: list[int], why: str) -> dict[int, DecodedRecord]:
        """Decode in this process, and leave a note saying so for each page's recall."""
        name = self._backend_name()
        log.warning("decoding pages %s inline with %s: %s", page_ids, name, why)
        self._decoded_here = True
        out = self.decode_here(page_ids)
        with self._lock:
            for pid in page_ids:
                self._notes[pid] = f"decoded inline by this process: {why} (backend {name!r})"
        return out

    def _wait_queue(self, timeout: float | None) -> bool:
        """Until every page this process queued is decoded at its current mode (inline where no
        worker is alive); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            todo = list(self._queued)
        alive = [pid for pid in todo if self._exists(pid)]
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            done = self._decode_queue(
                alive, timeout=QUEUE_WAIT_S if left is None else left, inline_when_slow=left is None
            )
        except Exception as exc:
            log.warning("queued decode of pages %s failed (recall will retry): %s", alive, exc)
            done = {}
        with self._lock:
            self._queued.difference_update(done)
            self._queued.difference_update(set(todo) - set(alive))
        return len(done) == len(alive)

    def _exists(self, page_id: int) -> bool:
        try:
            self.store.page_by_id(page_id)
        except PageNotFound:
            return False
        return True
