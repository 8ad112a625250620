"""Decoding pages with the backend, once per (page, mode, backend fingerprint), off the recall path.

Pages are decoded when they are made or aged (on a background thread by default) and the text
is cached and indexed for search, so recall reads a row instead of running OCR. The cache is
keyed by the backend's fingerprint: new weights or new trained data never serve stale text.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Literal

from PIL import Image

from .backends import Backend, PageInput
from .layout import restore_placeholders
from .store import DecodedRecord, PageRecord, Store

log = logging.getLogger("optimem")

DecodeWhen = Literal["background", "now", "lazy"]


class Decoder:
    """Runs the backend over stored pages and keeps the decoded-text cache and index current."""

    def __init__(self, store: Store, backend: Callable[[], Backend], when: DecodeWhen) -> None:
        self.store = store
        self._backend = backend
        self.when: DecodeWhen = when
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future] = set()
        self._lock = threading.Lock()

    @property
    def backend(self) -> Backend:
        return self._backend()

    # -- scheduling ------------------------------------------------------------------------

    def schedule(self, page_ids: Sequence[int], *, force_background: bool = False) -> None:
        """Decode these pages as `when` says (`force_background`: even when lazy)."""
        if not page_ids or (self.when == "lazy" and not force_background):
            return
        if self.when == "now" and not force_background:
            self.decode(page_ids)
            return
        batches = [list(page_ids)] if self.backend.capabilities.batches else [[pid] for pid in page_ids]
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optimem-decode")
            futures = [self._executor.submit(self._decode_logged, batch) for batch in batches]
            self._pending.update(futures)
        for future in futures:
            future.add_done_callback(self._discard)

    def _decode_logged(self, page_ids: list[int]) -> None:
        # logged inside the task, so that when the future is done the failure is accounted for
        try:
            self.decode(page_ids)
        except Exception as exc:
            log.warning("background decode of pages %s failed (recall will retry): %s", page_ids, exc)

    def _discard(self, future: Future) -> None:
        with self._lock:
            self._pending.discard(future)

    def pending(self) -> int:
        """Batches of pages queued or being decoded in the background."""
        with self._lock:
            return sum(not f.done() for f in self._pending)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every scheduled decode has finished and been logged; False on timeout."""
        while True:
            with self._lock:
                pending = [f for f in self._pending if not f.done()]
            if not pending:
                return True
            _, not_done = futures_wait(pending, timeout=timeout)
            if not_done:
                return False

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    # -- decoding --------------------------------------------------------------------------

    def page_input(self, page: PageRecord) -> PageInput:
        png, lines, representation, _ = self.store.page_blobs(page.id)
        image = Image.open(io.BytesIO(png))
        image.load()
        factor = page.canvas / page.creation_canvas
        return PageInput(
            image=image,
            mode=page.mode,
            lines=tuple(line.scaled(factor) for line in lines),
            font_px=page.font_px * factor,
            has_cjk=page.has_cjk,
            # the backend checks the fingerprint inside the blob and re-encodes on a mismatch
            representation=representation,
        )

    def cached(self, page: PageRecord) -> DecodedRecord | None:
        return self.store.get_decoded(page.id, page.mode, self.backend.fingerprint())

    def decode(self, page_ids: Sequence[int], *, refresh: bool = False) -> dict[int, DecodedRecord]:
        """Decode (or read from the cache) these pages at their current modes.

        `refresh` reads them again with the backend and replaces what the cache held.
        """
        backend = self.backend
        fingerprint = backend.fingerprint()
        out: dict[int, DecodedRecord] = {}
        todo: list[PageRecord] = []
        for pid in page_ids:
            page = self.store.page_by_id(pid)
            hit = None if refresh else self.store.get_decoded(page.id, page.mode, fingerprint)
            if hit is None:
                todo.append(page)
            else:
                out[page.id] = hit
        if not todo:
            return out
        results = backend.decode_many([self.page_input(p) for p in todo])
        for page, result in zip(todo, results, strict=True):
            lines = None if result.lines is None else tuple(restore_placeholders(x) for x in result.lines)
            record = DecodedRecord(
                page_id=page.id,
                mode=page.mode,
                backend=backend.name,
                fingerprint=fingerprint,
                text=restore_placeholders(result.text),
                lines=lines,
                confidence=float(result.confidence),
                seconds=float(result.seconds),
            )
            verbatim = " ".join(v.value for v in self.store.verbatim(page.id))
            self.store.put_decoded(record, index_text=f"{record.text}\n{verbatim}")
            out[page.id] = record
        return out
