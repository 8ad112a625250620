"""Reading background pages in worker processes, one per core.

Reading a page is OCR (C++, mostly outside the GIL) and then proofreading, whose correction
search is Python and holds the GIL; with threads, two pages read at once share one core for
that part. A worker process opens the store by its URL and the backend by its name once, then
reads pages by id and writes their text into the shared cache itself, so nothing but a page id
and an error cross the process boundary. Needs a store other processes can open (a file or
PostgreSQL, not ":memory:") and a backend chosen by name.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from ..errors import InputError


def check_shareable(store_url: str) -> None:
    """Raise InputError for a store that worker processes cannot open: an in-memory database."""
    if store_url in (":memory:", "sqlite:///:memory:"):
        raise InputError("decode_pool='processes' needs a database file or PostgreSQL, not ':memory:'")


class ProcessReader:
    """Reads a page by id in one of `processes` worker processes (started on first use): each
    runs `start(store_url, backend_name, processes)` once, then `read(page_id)` per page. Both must be
    module-level functions (they are sent to the processes by name); the store must pass
    `check_shareable`."""

    def __init__(
        self,
        start: Callable[[str, str, int], None],
        read: Callable[[int], None],
        store_url: str,
        backend_name: str,
        processes: int,
    ) -> None:
        # spawn, not fork: the parent runs threads (the page queue, onnxruntime's pool)
        self._pool = ProcessPoolExecutor(
            max_workers=processes,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=start,
            initargs=(store_url, backend_name, processes),
        )
        self._read = read

    def __call__(self, page_id: int) -> None:
        self._pool.submit(self._read, page_id).result()

    def close(self, *, wait: bool) -> None:
        """Stop the workers; `wait=False` does not wait for a page being read (it is read again
        at the next start, as the queue reports it left unread)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
        if not wait:
            # a page in progress cannot be interrupted; end its process rather than the exit
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
