"""Decoding pages with the backend, once per (page, mode, backend fingerprint), off the recall path.

Pages are decoded when they are made or aged and the text is cached and indexed for search, so
recall reads a row instead of running OCR. The cache is keyed by the backend's fingerprint: new
weights or new trained data never serve stale text.

Two strategies share one interface, `Decoder`: `LocalDecoder` reads in this process (now, lazily,
or on background threads with recalls first); `optimem.workers.queued.QueueDecoder` hands pages
to `optimem worker` processes through a PostgreSQL job queue. Both read a page the same way
(`Decoder.decode_here`: OCR, then proofreading against the page's reading aids).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import wait as futures_wait
from typing import Literal

from PIL import Image

from ..aids.linecheck import WORD, count_verified
from ..backends import Backend, PageInput
from ..errors import BackendUnavailable, DecodeError, InputError, PageNotFound, RepresentationMismatch
from ..layout import VerbatimItem, restore_placeholders, speaker
from ..store import DecodedRecord, Store, StoredPage
from . import proofread as pr
from .page_queue import BACKGROUND, PageQueue
from .process_pool import ProcessReader, check_shareable

log = logging.getLogger("optimem")

DecodeWhen = Literal["background", "now", "lazy", "queue"]
DecodePool = Literal["threads", "processes"]
#: Seconds background decoding waits before trying a failed page again, after the first and
#: second failure; after the third it leaves the page to recalls (which raise DecodeError).
RETRY_AFTER_S = (30.0, 300.0)


class Decoder:
    """Reads stored pages with the backend and keeps the decoded-text cache and index current.

    One interface for both strategies: where and when pages are read (`schedule`, `decode`,
    `cached`, `pending`, `wait`, `close`, `forget`) is theirs; how a page is read
    (`decode_here`) is shared.
    """

    when: DecodeWhen

    def __init__(
        self,
        store: Store,
        backend: Callable[[], Backend],
        *,
        backend_name: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self._backend = backend
        # a queue decoder names the backend without loading it (workers load it)
        self._backend_name = backend_name or (lambda: self.backend.name)
        self._lock = threading.Lock()
        self._notes: dict[int, str] = {}

    @property
    def backend(self) -> Backend:
        return self._backend()

    # -- the strategy's part -----------------------------------------------------------------

    def schedule(self, page_ids: Sequence[int], *, force_background: bool = False) -> None:
        """Have these pages read as the strategy says (`force_background`: even when lazy)."""
        raise NotImplementedError

    def decode(self, page_ids: Sequence[int], *, refresh: bool = False) -> dict[int, DecodedRecord]:
        """Decode (or read from the cache) these pages at their current modes; `refresh` reads
        them again with the backend in this process and replaces what the cache held."""
        raise NotImplementedError

    def cached(self, page: StoredPage) -> DecodedRecord | None:
        """The page's text at its current mode, if this strategy has it cached."""
        return self.store.get_decoded(page.id, page.mode, self.fingerprint())

    def pending(self) -> int:
        """Pages waiting to be read."""
        return 0

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every scheduled decode has finished; False on timeout."""
        return True

    def close(self, timeout: float | None = None) -> list[int]:
        """Stop reading in the background; returns the pages left unread."""
        return []

    def forget(self, page_ids: Sequence[int]) -> int:
        """Drop these pages from what is waiting to be read (their session is being deleted)."""
        return 0

    def failed_pages(self) -> set[int]:
        """Pages background reading gave up on (a recall still tries them)."""
        return set()

    def unread(self, session_ids: Sequence[str]) -> list[int]:
        """Pages of these sessions with no text read at their current mode by this backend."""
        fingerprint = self.fingerprint()
        return [
            p.id
            for sid in session_ids
            for p in self.store.pages(sid)
            if self.store.get_decoded(p.id, p.mode, fingerprint) is None
        ]

    def take_note(self, page_id: int) -> str | None:
        """What was unusual about the last decode of this page (e.g. decoded inline), once."""
        with self._lock:
            return self._notes.pop(page_id, None)

    # -- reading a page in this process ------------------------------------------------------

    def page_input(self, page: StoredPage) -> PageInput:
        return self._prepare(page, lambda: self.turn_labels(page.session_id), self.store.verbatim(page.id))[0]

    def _prepare(
        self, page: StoredPage, labels: Callable[[], dict[int, str]], strings: Sequence[VerbatimItem]
    ) -> tuple[PageInput, pr.ReadingAids]:
        """The page as the backend reads it, and what it keeps to be proofread: its line checks
        and rare words (with the words of its verbatim `strings`), and the speaker label of each
        line that starts a turn (from the turns' roles and names, which outlive the archive;
        `labels` is only called when needed)."""
        blobs = self.store.page_blobs(page.id)
        layout = blobs.layout
        image = Image.open(io.BytesIO(blobs.png))
        image.load()
        aids = pr.ReadingAids()
        kept = self.store.reading_aids(page.id)
        if kept is not None:
            by_turn = labels()
            by_line = {
                i: by_turn[b.turn_id]
                for i, b in enumerate(layout)
                # a turn's first row only: output kept as typed starts on the row after its label
                if b.start == 0 and b.turn_id in by_turn and (i == 0 or layout[i - 1].turn_id != b.turn_id)
            }
            aids = pr.ReadingAids.from_kept(kept, by_line)
            # the words of the page's verbatim strings are as good as its rare words for snapping
            # a misread back (an identifier's pieces are rarely in the dictionary)
            words = [w for v in strings for w in WORD.findall(v.value) if len(w) > 1]
            if words:
                aids = dataclasses.replace(aids, lexicon=tuple(dict.fromkeys((*aids.lexicon, *words))))
        factor = page.canvas / page.creation_canvas
        page_in = PageInput(
            image=image,
            mode=page.mode,
            lines=tuple(line.scaled(factor) for line in layout),
            font_px=page.font_px * factor,
            has_cjk=page.has_cjk,
            # the backend checks the fingerprint inside the blob and re-encodes on a mismatch
            representation=blobs.representation,
            checks=aids.checks,
        )
        return page_in, aids

    def turn_labels(self, session_id: str) -> dict[int, str]:
        """Speaker label typeset before each turn's first line, by turn id."""
        return {t.id: speaker(t.role, t.name) + ":" for t in self.store.turns(session_id)}

    def fingerprint(self) -> str:
        """Cache key of the text this process reads: the backend's, proofread."""
        return pr.fingerprint(self.backend)

    def decode_here(self, page_ids: Sequence[int], *, refresh: bool = False) -> dict[int, DecodedRecord]:
        """Decode (or read from the cache) these pages in this process, as one batch."""
        backend = self.backend
        fingerprint = self.fingerprint()
        out: dict[int, DecodedRecord] = {}
        todo: list[StoredPage] = []
        for pid in page_ids:
            page = self.store.page_by_id(pid)
            hit = None if refresh else self.store.get_decoded(page.id, page.mode, fingerprint)
            if hit is None:
                todo.append(page)
            else:
                out[page.id] = hit
        if not todo:
            return out
        labels: dict[str, dict[int, str]] = {}

        def session_labels(session_id: str) -> dict[int, str]:
            if session_id not in labels:  # one read of the turns per session in the batch
                labels[session_id] = self.turn_labels(session_id)
            return labels[session_id]

        # each page's verbatim strings: words for proofreading, then text for the search index
        strings = {p.id: self.store.verbatim(p.id) for p in todo}
        prepared = [
            self._prepare(p, functools.partial(session_labels, p.session_id), strings[p.id]) for p in todo
        ]
        inputs = [page_in for page_in, _ in prepared]
        try:
            results = backend.decode_many(inputs)
        except (BackendUnavailable, RepresentationMismatch):
            raise
        except Exception as exc:
            ids = [p.id for p in todo]
            name = f"page {ids[0]}" if len(ids) == 1 else f"pages {ids}"
            raise DecodeError(f"{backend.name} could not read {name}: {exc}", page_id=ids[0]) from exc
        for page, (page_in, aid), result in zip(todo, prepared, results, strict=True):
            text, lines = result.text, result.lines
            try:
                checked = pr.proofread(
                    page_in, result, aid, reread=functools.partial(backend.alternates, page_in)
                )
            except Exception:  # the reading stands, unverified: proofreading never costs a page
                log.exception("proofreading page %s failed; keeping what the OCR read", page.id)
                checked = None
            if checked is not None:
                lines = checked.lines
                text = "\n".join(lines)
            kept_lines = None if lines is None else tuple(restore_placeholders(x) for x in lines)
            record = DecodedRecord(
                page_id=page.id,
                mode=page.mode,
                backend=backend.name,
                fingerprint=fingerprint,
                text=restore_placeholders(text),
                lines=kept_lines,
                confidence=float(result.confidence),
                seconds=float(result.seconds),
                verified=count_verified(kept_lines, aid.checks),
            )
            verbatim = " ".join(v.value for v in strings[page.id])
            self.store.put_decoded(record, index_text=f"{record.text}\n{verbatim}")
            out[page.id] = record
            self._read(page.id)
        return out

    def _read(self, page_id: int) -> None:
        """A page was read and its text stored (a strategy may clear its failure count)."""


class LocalDecoder(Decoder):
    """Reads pages on this machine: at once (`now`), on first recall (`lazy`) or in the
    background (`background`) on `workers` threads, or with `pool="processes"` in as many worker
    processes (`optimem.reading.process_pool`); a recall's pages go ahead of the background
    queue and are read in the caller's thread, and failed pages back off (`RETRY_AFTER_S`)."""

    def __init__(
        self,
        store: Store,
        backend: Callable[[], Backend],
        when: Literal["background", "now", "lazy"] = "background",
        *,
        backend_name: Callable[[], str] | None = None,
        workers: int = 1,
        pool: DecodePool = "threads",
    ) -> None:
        super().__init__(store, backend, backend_name=backend_name)
        if pool not in ("threads", "processes"):
            raise InputError(f"decode pool must be 'threads' or 'processes', got {pool!r}")
        if pool == "processes":  # at construction, not at the first page the pool would read
            check_shareable(store.url)
        self.when: DecodeWhen = when
        self.workers = workers
        self.pool: DecodePool = pool
        self._pages: PageQueue | None = None
        self._processes: ProcessReader | None = None
        self._failures: dict[int, tuple[int, float]] = {}  # page id -> (failures, next try)

    def schedule(self, page_ids: Sequence[int], *, force_background: bool = False) -> None:
        """Decode these pages as `when` says (`force_background`: even when lazy)."""
        if not page_ids or (self.when == "lazy" and not force_background):
            return
        if self.when == "now" and not force_background:
            self.decode(page_ids)
            return
        page_ids = [pid for pid in page_ids if self._may_try(pid)]  # failed pages back off
        if page_ids:
            self._background().submit(page_ids, BACKGROUND)

    def _background(self) -> PageQueue:
        with self._lock:
            if self._pages is None:
                if self.pool == "processes":
                    self._processes = ProcessReader(
                        _start_reader, _read_page, self.store.url, self._backend_name(), self.workers
                    )
                self._pages = PageQueue(self._read_logged, workers=self.workers)
            return self._pages

    def _read_one(self, page_id: int) -> None:
        if self._processes is None:
            self.decode_here([page_id])
        else:
            self._processes(page_id)  # the worker process writes the text into the store
            self._read(page_id)

    def _read_logged(self, page_id: int) -> None:
        # logged inside the task, so that when the future is done the failure is accounted for
        try:
            self._read_one(page_id)
        except PageNotFound:
            pass  # its session was deleted, or it was unpaged, while it waited
        except Exception as exc:
            tries = self._failed(page_id)
            again = (
                f"background retry in {RETRY_AFTER_S[tries - 1]:.0f} s"
                if tries <= len(RETRY_AFTER_S)
                else "no more background retries; a recall still tries"
            )
            log.warning("background decode of page %s failed (%s): %s", page_id, again, exc)
            raise

    def _failed(self, page_id: int) -> int:
        with self._lock:
            tries = self._failures.get(page_id, (0, 0.0))[0] + 1
            wait = RETRY_AFTER_S[tries - 1] if tries <= len(RETRY_AFTER_S) else float("inf")
            self._failures[page_id] = (tries, time.monotonic() + wait)
            return tries

    def _may_try(self, page_id: int) -> bool:
        with self._lock:
            tries, after = self._failures.get(page_id, (0, 0.0))
        return tries == 0 or time.monotonic() >= after

    def failed_pages(self) -> set[int]:
        """Pages background decoding gave up on (a recall still tries them)."""
        with self._lock:
            return {pid for pid, (tries, _) in self._failures.items() if tries > len(RETRY_AFTER_S)}

    def forget(self, page_ids: Sequence[int]) -> int:
        """Drop these pages from the background queue (their session is being deleted)."""
        with self._lock:
            pages = self._pages
        return 0 if pages is None else pages.discard(page_ids)

    def pending(self) -> int:
        """Pages queued or being decoded in the background."""
        with self._lock:
            pages = self._pages
        return 0 if pages is None else pages.pending()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every scheduled decode has finished and been logged; False on timeout."""
        with self._lock:
            pages = self._pages
        return True if pages is None else pages.wait(timeout)

    def close(self, timeout: float | None = None) -> list[int]:
        """Stop decoding in the background: queued pages are not started and the running ones
        get `timeout` seconds (None: as long as they take). Returns the pages left unread; they
        stay undecoded in the store, and `unread()` finds them at the next start."""
        with self._lock:
            pages, self._pages = self._pages, None
            processes, self._processes = self._processes, None
        left = [] if pages is None else pages.close(timeout)
        if processes is not None:
            processes.close(wait=not left)
        if left:
            log.info("%d pages were left unread at shutdown; they are read at the next start", len(left))
        return left

    def decode(self, page_ids: Sequence[int], *, refresh: bool = False) -> dict[int, DecodedRecord]:
        """Decode (or read from the cache) these pages at their current modes, ahead of the
        background queue; `refresh` reads them again and replaces what the cache held."""
        with self._lock:
            pages = self._pages
        if pages is None:
            return self.decode_here(page_ids, refresh=refresh)
        # a page the background is reading now is waited for; one queued is taken out and read
        # here, ahead of the queue, while the workers start nothing new
        running = [f for f in (pages.take(pid) for pid in page_ids) if f is not None]
        futures_wait(running)
        error: BaseException | None = None
        try:
            with pages.urgent():
                return self.decode_here(page_ids, refresh=refresh)
        except BaseException as exc:
            error = exc
            raise
        finally:
            for pid in page_ids:
                pages.finished(pid, error)

    def _read(self, page_id: int) -> None:
        with self._lock:
            self._failures.pop(page_id, None)


# -- in a worker process of `decode_pool="processes"` (optimem.reading.process_pool) ----------

_reader: LocalDecoder | None = None


def _start_reader(store_url: str, backend_name: str, processes: int) -> None:
    """Once per worker process: open the store, load and warm the backend (with its share of
    the cores, `worker_backend`)."""
    global _reader
    from ..backends import worker_backend
    from ..store import open_store

    store = open_store(store_url)
    backend = worker_backend(backend_name, processes)
    backend.warm_up((1,))
    pr.warm_up()
    _reader = LocalDecoder(store, lambda: backend, "now")


def _read_page(page_id: int) -> None:
    assert _reader is not None, "the worker process did not start"
    _reader.decode_here([page_id])
