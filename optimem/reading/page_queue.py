"""Background reading in order of need: worker threads take the most wanted page first.

Pages are read when they are made or aged, off the caller's thread. A page someone is
waiting for (a recall, a search with ``wait=True``) must not queue behind a hundred pages
nobody asked for yet, and pages of a deleted session must not be read at all. So the queue is
a heap by priority (then age), a page is queued once (asking again only raises its priority),
workers start no background page while an urgent read is running in a caller's thread, and
`close` stops within its timeout, leaving unread pages for the next start to resume.

The queue's workers are threads; each reads a page in this process or hands its id to a
worker process (`optimem.reading.process_pool`, `OpticalMemory(decode_pool="processes")`),
so the order of need holds either way.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager

log = logging.getLogger("optimem")

#: Priorities: lower runs first.
URGENT = 0
BACKGROUND = 10


class PageQueue:
    """Reads queued pages with `read(page_id)` on `workers` threads, most wanted first."""

    def __init__(
        self, read: Callable[[int], object], *, workers: int = 1, name: str = "optimem-decode"
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._read = read
        self._workers = workers
        self._name = name
        self._heap: list[tuple[int, int, int]] = []
        self._seq = itertools.count()
        self._queued: dict[int, tuple[int, int]] = {}  # page id -> (priority, seq) of its live entry
        self._futures: dict[int, Future] = {}
        self._running: set[int] = set()
        self._urgent = 0
        self._closed = False
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    # -- asking --------------------------------------------------------------------------

    def submit(self, page_ids: Iterable[int], priority: int = BACKGROUND) -> list[Future]:
        """Queue these pages (a page queued or running already keeps its place, or moves up to
        `priority`); returns each page's future, done when it has been read."""
        out = []
        with self._cond:
            if self._closed:
                raise RuntimeError("the decode queue is closed")
            for pid in page_ids:
                future = self._futures.get(pid)
                if future is None:
                    future = self._futures[pid] = Future()
                queued = self._queued.get(pid)
                if queued is None or priority < queued[0]:  # (a running page may need another read)
                    entry = (priority, next(self._seq))
                    self._queued[pid] = entry
                    heapq.heappush(self._heap, (*entry, pid))
                out.append(future)
            self._start_workers()
            self._cond.notify_all()
        return out

    def take(self, page_id: int) -> Future | None:
        """Take a page out of the queue to read it in the caller's thread: None when it was not
        running (the caller reads it, within `urgent()`), else the running read's future."""
        with self._cond:
            if page_id in self._running:
                return self._futures[page_id]
            self._queued.pop(page_id, None)
            return None

    def finished(self, page_id: int, error: BaseException | None = None) -> None:
        """A page read outside the workers (see `take`): settle anyone waiting for it."""
        with self._cond:
            if page_id in self._queued or page_id in self._running:
                return
            future = self._futures.pop(page_id, None)
        if future is not None and not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    @contextmanager
    def urgent(self) -> Iterator[None]:
        """While inside, workers start no new page: a caller is reading what it waits for."""
        with self._cond:
            self._urgent += 1
        try:
            yield
        finally:
            with self._cond:
                self._urgent -= 1
                self._cond.notify_all()

    def discard(self, page_ids: Iterable[int]) -> int:
        """Drop these pages from the queue (their session was deleted); returns how many."""
        dropped = []
        with self._cond:
            for pid in page_ids:
                if self._queued.pop(pid, None) is not None:
                    dropped.append(self._futures.pop(pid, None))
        for future in dropped:
            if future is not None:
                future.cancel()
        return len(dropped)

    def pending(self) -> int:
        """Pages queued or being read."""
        with self._cond:
            return len(self._queued) + len(self._running)

    def wait(self, timeout: float | None = None) -> bool:
        """Until nothing is queued or running; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queued or self._running:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float | None = None) -> list[int]:
        """Stop: queued pages are not started; running ones get `timeout` seconds to finish.
        Returns the pages left unread (queued, or still running at the timeout)."""
        with self._cond:
            self._closed = True
            left = list(self._queued)
            self._queued.clear()
            self._heap.clear()
            cancelled = [self._futures.pop(pid) for pid in left if pid in self._futures]
            self._cond.notify_all()
            threads = list(self._threads)
        for future in cancelled:
            future.cancel()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        with self._cond:
            return left + sorted(self._running)

    # -- the workers ---------------------------------------------------------------------

    def _start_workers(self) -> None:
        while len(self._threads) < self._workers:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _next(self) -> int | None:
        with self._cond:
            while True:
                if self._closed:
                    return None
                while self._heap:
                    priority, seq, pid = self._heap[0]
                    if self._queued.get(pid) != (priority, seq):  # moved up or dropped since
                        heapq.heappop(self._heap)
                        continue
                    break
                if self._heap and (self._urgent == 0 or self._heap[0][0] <= URGENT):
                    _, _, pid = heapq.heappop(self._heap)
                    del self._queued[pid]
                    self._running.add(pid)
                    return pid
                self._cond.wait()

    def _work(self) -> None:
        while (pid := self._next()) is not None:
            error: BaseException | None = None
            try:
                self._read(pid)
            except BaseException as exc:  # settled on the future; the worker goes on
                error = exc
            with self._cond:
                self._running.discard(pid)
                future = self._futures.pop(pid, None) if pid not in self._queued else None
                self._cond.notify_all()
            if future is not None and not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
