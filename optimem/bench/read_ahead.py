"""Replaying chats and reading their pages in worker processes, one per core.

A benchmark spends most of its time reading pages back (OCR, then proofreading: seconds a page
on the CPU engines) and the rest replaying chats turn by turn, one after another. Both are
independent across replays, and each replay has its own database file. So the runner hands
every replay of every chat to worker processes first; as each is done (in order), it opens the
replay's database itself and hands the worker processes the pages to read: a worker opens
that database and the backend by name, recalls the page (its text lands in the database's
cache) and reports the seconds it took. The runner then scores the pages in their usual order
from the cache, with the worker's seconds as the page's reading time, so every figure is
what one process doing all of it gives. A page whose image an earlier replay of the chat makes
too is not sent: it takes that read (`SharedReads`), as before.

Processes, not threads: proofreading's correction search is Python and holds the GIL. Only
for backends that may run in several processes (`Capabilities.in_processes`: the CPU engines);
a GPU model is held by one process, which reads in turn.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from ..backends import Backend, worker_backend
from ..memory import OpticalMemory
from .config import BenchConfig
from .datasets import Chat
from .replay import Replay, ReplaySpec, reopen, replay

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..records import Page
    from .shared_reads import SharedReads

log = logging.getLogger("optimem")


class ReadAhead:
    """Replays made and their pages read by `jobs` worker processes, waited for one by one."""

    def __init__(self, backend: str, jobs: int) -> None:
        # spawn, not fork: the parent holds onnxruntime's and tesseract's threads
        self.jobs = jobs
        self._pool = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start,
            initargs=(backend, jobs),
        )
        self._futures: dict[tuple[str, int], Future[float]] = {}

    def replay(self, chat: Chat, spec: ReplaySpec, *, cfg: BenchConfig, folder: Path) -> Future[tuple]:
        """Replay `chat` in a worker (no progress bars there); `replayed` opens the result."""
        return self._pool.submit(_replay, chat, spec, dataclasses.replace(cfg, progress=False), folder)

    def submit(self, rep: Replay, pages: Iterable[Page], shared: SharedReads) -> None:
        """Read `pages` of `rep` ahead, but for those whose image a page sent earlier makes."""
        db = str(rep.memory.store.url)
        for page in pages:
            if shared.first_sight(shared.key(rep, page)):
                self._futures[(db, page.id)] = self._pool.submit(_read, db, rep.session.id, page.id)

    def seconds(self, rep: Replay, page_id: int) -> float | None:
        """Wait until a worker has read this page and return the seconds it took; None for a
        page not sent, or one the worker could not read (the caller reads it and meets the
        error itself)."""
        future = self._futures.pop((str(rep.memory.store.url), page_id), None)
        if future is None:
            return None
        try:
            return future.result()
        except Exception as exc:  # the caller's own read says what went wrong
            log.warning("a read-ahead worker could not read page %d (%s); reading it here", page_id, exc)
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replayed(
    future: Future[tuple], chat: Chat, spec: ReplaySpec, *, cfg: BenchConfig, backend: Backend, folder: Path
) -> Replay:
    """The replay a worker made (`ReadAhead.replay`), opened in this process."""
    turn_ids, series, compress_seconds, over_budget = future.result()
    rep = reopen(chat, spec, cfg=cfg, backend=backend, folder=folder)
    rep.turn_ids, rep.series, rep.compress_seconds, rep.over_budget = (
        turn_ids,
        series,
        compress_seconds,
        over_budget,
    )
    return rep


# -- in a worker process ---------------------------------------------------------------------

_backend: Backend | None = None
_memories: dict[str, OpticalMemory] = {}


def _start(backend: str, jobs: int) -> None:
    global _backend
    _backend = worker_backend(backend, jobs)


def _replay(chat: Chat, spec: ReplaySpec, cfg: BenchConfig, folder: Path) -> tuple:
    """One replay into its database file; what `replayed` needs besides the file."""
    assert _backend is not None
    rep = replay(chat, spec, cfg=cfg, backend=_backend, folder=folder)
    rep.memory.close()
    return rep.turn_ids, rep.series, rep.compress_seconds, rep.over_budget


def _read(db: str, session_id: str, page_id: int) -> float:
    """Recall one page of the replay database `db` (its text is cached there); its seconds."""
    memory = _memories.get(db)
    if memory is None:
        memory = _memories[db] = OpticalMemory(db, backend=_backend, decode="lazy")
    t0 = time.perf_counter()
    memory.session(session_id).recall_page(page_id)
    return time.perf_counter() - t0
