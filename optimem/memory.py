"""OpticalMemory and Session: the thin façade over paging, decoding, recall, context and turns.

The memory takes its collaborators (store, backend, policy) in the constructor. OCR cost is
kept off the recall path: each page is decoded once when it is created or aged (on a
background thread by default) and recall reads the cached text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from .aging.policies import AgingPolicy, BudgetPolicy, parse_policy
from .aging.pricing import Pricing
from .backends import DEFAULT_BACKEND, Backend, backend_class, get_backend
from .context import build_context, build_stats
from .errors import BackendUnavailable, DuplicateExternalId, InputError
from .layout import restore_placeholders
from .modes import Mode
from .pages.paging import Pager
from .reading.decoding import DecodePool, Decoder, DecodeWhen, LocalDecoder
from .reading.proofread import warm_up as proofread_warm_up
from .reading.recall import recall_page, recall_turns, search
from .records import CompressResult, Context, Deleted, Hits, Page, Recall, RecalledTurn, Stats, Turn
from .store import Store, StoredPage, StoredTurn, open_store
from .tokens import DEFAULT_ENCODING, count_tokens
from .turns import coerce_turns

log = logging.getLogger("optimem")

#: The mode new pages are typeset at (see OpticalMemory's creation_mode).
DEFAULT_CREATION_MODE = Mode.SMALL
#: The backend used when the default `cpu` cannot load (no tesseract data on this machine).
FALLBACK_BACKEND = "rapidocr"


class OpticalMemory:
    """Optical memory over one database: `mem.session(id)` gives a Session.

    Args:
        path: SQLite file path, ``sqlite:///path`` URL, ``":memory:"``, another store's URL
            (``postgresql://…``) or a Store.
        backend: OCR backend name (``"cpu"``, ``"tesseract"``, ``"rapidocr"``,
            ``"deepseek-ocr2"`` …) or a Backend instance. Loaded on first use. Left out, the
            default ``cpu`` backend falls back to ``rapidocr`` (with a warning) where
            tesseract's data is not installed.
        policy: An AgingPolicy or its short form (``"budget:4000"``, ``"turns"``,
            ``"clock"``, ``"none"``). Default: keep each session within 4000 tokens.
        creation_mode: The mode pages are typeset at; they age down the ladder from there.
            Default Small (see README: why Small).
        keep_recent_turns: Newest turns left as text by `compress()`.
        archive: Keep the source text of paged turns (``False`` drops it after paging).
        decode: When to OCR new and aged pages: ``"background"`` (default), ``"now"``
            (inside compress), ``"lazy"`` (on first recall) or ``"queue"`` (PostgreSQL
            only: `optimem worker` processes decode them; recall waits for its page, or
            decodes inline when no worker is alive and says so in `Recall.note`).
        encoding: tiktoken encoding for text tokens.
        reading_aids: Keep beside each new page a 3-byte check of each line's words and the
            page's rare words (about 4% of its characters), so that recall knows which lines
            it read exactly and corrects the others (`optimem.reading.proofread`). Off: pages keep only
            their verbatim strings, and recall returns what the OCR read.
        consumer: Whose image-token rule prices pages in budgets, stats and context
            (a name from `optimem.aging.pricing.CONSUMERS`); default the backend's positions.
        rehearse: Rehearsal: a page read back by `recall_page` (or `recall(page_id)`) is
            sharpened one rung from the archive, counts as used now, and the policy re-plans
            (it may age another page). Needs the archive; off by default.
        decode_workers: Pages read at once in the background, most wanted first (a recall
            reads its page at once, ahead of them).
        decode_pool: "threads" (default) reads them on threads of this process; "processes"
            in a worker process each, which opens the database and the backend by name
            (needs both: not ":memory:", not a backend instance), so proofreading's Python
            runs on every core (docs/reading-speed.md has the measurement).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Store = "optimem.db",
        *,
        backend: str | Backend | None = None,
        policy: AgingPolicy | str | None = None,
        creation_mode: Mode | str = DEFAULT_CREATION_MODE,
        keep_recent_turns: int = 6,
        archive: bool = True,
        decode: DecodeWhen = "background",
        encoding: str = DEFAULT_ENCODING,
        consumer: str | None = None,
        reading_aids: bool = True,
        rehearse: bool = False,
        decode_workers: int = 1,
        decode_pool: DecodePool = "threads",
    ) -> None:
        if (
            isinstance(keep_recent_turns, bool)
            or not isinstance(keep_recent_turns, int)
            or keep_recent_turns < 0
        ):
            raise InputError("keep_recent_turns must be an integer ≥ 0")
        if decode not in ("background", "now", "lazy", "queue"):
            raise InputError(f"decode must be 'background', 'now', 'lazy' or 'queue', got {decode!r}")
        count_tokens("", encoding)  # fail early on an unknown encoding
        self._backend_spec = backend
        self._backend: Backend | None = backend if isinstance(backend, Backend) else None
        self._backend_class = (
            type(backend) if isinstance(backend, Backend) else backend_class(backend or DEFAULT_BACKEND)
        )
        self._backend_lock = threading.Lock()
        self.store = open_store(path)
        self.policy = parse_policy(policy) if isinstance(policy, str) else (policy or BudgetPolicy())
        self.creation_mode = Mode.parse(creation_mode)
        self.keep_recent_turns = keep_recent_turns
        self.archive = archive
        self.rehearse = rehearse
        self.encoding = encoding
        self.pricing = Pricing(self._backend_class, consumer, encoding)
        if isinstance(decode_workers, bool) or not isinstance(decode_workers, int) or decode_workers < 1:
            raise InputError("decode_workers must be an integer ≥ 1")
        if decode_pool == "processes" and isinstance(backend, Backend):
            raise InputError("decode_pool='processes' needs the backend by name: worker processes load it")
        self.decoder = _decoder(
            self.store,
            lambda: self.backend,
            decode,
            lambda: self._backend_class.name,
            decode_workers,
            decode_pool,
        )
        self.pager = Pager(
            self.store,
            lambda: self.backend,
            lambda: self.pricing,
            creation_mode=self.creation_mode,
            keep_recent_turns=keep_recent_turns,
            encoding=encoding,
            reading_aids=reading_aids,
        )

    @property
    def backend(self) -> Backend:
        """The OCR backend, loaded on first use (pricing needs only its class)."""
        if self._backend is None:
            with self._backend_lock:
                if self._backend is None:
                    self._backend = self._load_backend()
        return self._backend

    def _load_backend(self) -> Backend:
        if self._backend_spec is not None:
            return get_backend(self._backend_spec)
        try:
            return get_backend(DEFAULT_BACKEND)
        except BackendUnavailable as exc:
            log.warning(
                "backend %r unavailable (%s); reading pages with %r", DEFAULT_BACKEND, exc, FALLBACK_BACKEND
            )
            backend = get_backend(FALLBACK_BACKEND)
            self._backend_class = type(backend)
            self.pricing = Pricing(type(backend), self.pricing.consumer, self.encoding)
            return backend

    @property
    def decode_when(self) -> DecodeWhen:
        return self.decoder.when

    def session(self, session_id: str) -> Session:
        """The session called `session_id`, created on first write."""
        if not isinstance(session_id, str) or not session_id.strip() or len(session_id) > 256:
            raise InputError("session id must be a non-empty string of at most 256 characters")
        return Session(self, session_id)

    def sessions(self, prefix: str | None = None) -> list[str]:
        """Ids of the stored sessions (those starting with `prefix`), oldest first."""
        return self.store.session_ids(prefix)

    def has_session(self, session_id: str) -> bool:
        return self.store.has_session(session_id)

    def pending_decodes(self) -> int:
        """Pages waiting for (or in) background OCR."""
        return self.decoder.pending()

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        """Load what reading needs once per process (engines, spelling index, a compiled decoder
        for these batch sizes) now, instead of in the first recall; returns the seconds it took.
        Services call it before they say ready."""
        t0 = time.perf_counter()
        self.backend.warm_up(batch_sizes)
        proofread_warm_up()
        return time.perf_counter() - t0

    def resume_decoding(self) -> int:
        """Queue for background OCR every page not read yet at its current mode (pages left
        unread by a stop, or made while no reader ran); returns how many."""
        unread = self.decoder.unread(self.store.session_ids())
        if unread:
            log.info("resuming background OCR of %d pages not read before the last stop", len(unread))
            self.decoder.schedule(unread, force_background=True)
        return len(unread)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until background decoding has finished and every failure is logged.

        Returns False if `timeout` (seconds) passed first.
        """
        return self.decoder.wait(timeout)

    def close(self, *, timeout: float | None = None) -> None:
        """Finish background decoding and close the database.

        Args:
            timeout: Seconds to give background OCR; pages it did not read by then stay
                undecoded (a recall reads them, `resume_decoding()` queues them). Default: wait
                until every queued page is read.
        """
        if timeout is None:
            self.decoder.wait()
        self.decoder.close(timeout)
        self.store.close()

    # -- async twins -----------------------------------------------------------------------
    # Each runs its blocking twin on a worker thread, so an event loop (a FastAPI route, an
    # async LangChain agent) never waits on the database or OCR.

    async def asessions(self, prefix: str | None = None) -> list[str]:
        return await asyncio.to_thread(self.sessions, prefix)

    async def ahas_session(self, session_id: str) -> bool:
        return await asyncio.to_thread(self.has_session, session_id)

    async def apending_decodes(self) -> int:
        return await asyncio.to_thread(self.pending_decodes)

    async def awarm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        return await asyncio.to_thread(self.warm_up, batch_sizes)

    async def aresume_decoding(self) -> int:
        return await asyncio.to_thread(self.resume_decoding)

    async def await_decodes(self, timeout: float | None = None) -> bool:
        """The async twin of `wait` (`await` is a keyword)."""
        return await asyncio.to_thread(self.wait, timeout)

    async def aclose(self, *, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.close, timeout=timeout)

    def __enter__(self) -> OpticalMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def public_page(self, p: StoredPage) -> Page:
        return Page(
            id=p.id,
            mode=p.mode,
            creation_mode=p.creation_mode,
            turn_ids=p.turn_ids,
            text_tokens=p.text_tokens,
            positions=self._backend_class.positions(p.mode),
            chars=p.chars,
            created_at=p.created_at,
            aged_at=p.aged_at,
            font_px=p.font_px,
            canvas=p.canvas,
            last_turn_seq=p.last_turn_seq,
            number=p.number,
        )


def public_turn(t: StoredTurn) -> Turn:
    return Turn(
        id=t.id,
        role=t.role,
        content=t.content,
        seq=t.seq,
        name=t.name,
        created_at=t.created_at,
        metadata=t.metadata,
        text_tokens=t.text_tokens,
        paged=t.paged,
        external_id=t.external_id,
        number=t.seq,
    )


class Session:
    """One conversation's memory. Obtain with `OpticalMemory.session(id)`."""

    def __init__(self, memory: OpticalMemory, session_id: str) -> None:
        self.memory = memory
        self.id = session_id

    @property
    def store(self) -> Store:
        return self.memory.store

    def _pricing(self, consumer: str | None) -> Pricing:
        mem = self.memory
        if consumer is None:
            return mem.pricing
        return Pricing(mem._backend_class, consumer, mem.encoding)

    # -- lifecycle -------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.store.has_session(self.id)

    def delete(self) -> Deleted:
        """Delete the session: turns, pages, archive, decoded text and side channel, counted.

        Raises SessionNotFound when there is no such session.
        """
        self.memory.decoder.forget([p.id for p in self.store.pages(self.id)])
        counts = self.store.delete_session(self.id)
        return Deleted(self.id, **counts)

    # -- turns -----------------------------------------------------------------------------

    def add_turn(
        self,
        role: str,
        content: str,
        *,
        name: str | None = None,
        created_at: datetime | str | None = None,
        metadata: dict | None = None,
        external_id: str | None = None,
    ) -> int:
        """Append one turn; returns its id. Raises InputError for bad input (nothing stored)."""
        turn = {
            "role": role,
            "content": content,
            "name": name,
            "created_at": created_at,
            "metadata": metadata,
            "external_id": external_id,
        }
        return self.add_turns([turn])[0]

    def add_turns(
        self, turns: Iterable[tuple[str, str] | dict[str, Any] | Turn], *, skip_existing: bool = False
    ) -> list[int]:
        """Append turns in order, all or nothing; returns their ids.

        A turn may carry an `external_id` (the caller's own id, unique in the session). A
        turn whose external id is already stored raises InputError, unless `skip_existing`,
        where it is not added again and its stored id is returned in its place.
        """
        rows = coerce_turns(turns, self.memory.encoding)
        if not rows:
            return []
        known = self.lookup_external_ids(r["external_id"] for r in rows if r["external_id"])
        if known and not skip_existing:
            dup = next(iter(known))
            raise DuplicateExternalId(
                f"external_id {dup!r} is already stored in this session (turn {known[dup]}); "
                "pass skip_existing=True to add only the new turns"
            )
        new = [r for r in rows if r["external_id"] not in known]
        added = iter(self.store.add_turns(self.id, new) if new else [])
        return [known[r["external_id"]] if r["external_id"] in known else next(added) for r in rows]

    def lookup_external_ids(self, external_ids: Iterable[str]) -> dict[str, int]:
        """External id → turn id for those already stored in this session."""
        return self.store.lookup_external_ids(self.id, [e for e in external_ids if e])

    def turns(self) -> list[Turn]:
        return [public_turn(t) for t in self.store.turns(self.id)]

    # -- compress --------------------------------------------------------------------------

    def compress(self, *, flush: bool = False) -> CompressResult:
        """Page old turns and age pages by the policy, in one transaction each.

        Args:
            flush: Also page the newest turns and a partly filled last page.
        """
        mem = self.memory
        policy = mem.policy
        with self.store.transaction():
            before = self.stats().context_tokens
            created = mem.pager.page_turns(self.id, flush=flush)
            if not flush and policy.budget is not None and self.stats().context_tokens > policy.budget:
                created += mem.pager.page_turns(self.id, flush=False, partial_ok=True)
        with self.store.transaction():
            plan = mem.pager.plan(self.id, policy)
            aged = mem.pager.age(self.id, plan)
        mem.decoder.schedule(created + [pid for pid, _, _ in aged])
        if mem.archive is False:
            self.store.drop_archive(self.id)
        log.debug("compress %s: %s pages, %s aged", self.id, len(created), len(aged))
        return CompressResult(created, aged, before, plan.tokens_after, plan.over_budget)

    # -- reading ---------------------------------------------------------------------------

    def pages(self) -> list[Page]:
        """Every page of the session, oldest first."""
        return [self.memory.public_page(p) for p in self.store.pages(self.id)]

    def page(self, page_id: int) -> Page:
        return self.memory.public_page(self.store.page(self.id, page_id))

    def page_source(self, page_id: int) -> str | None:
        """The text typeset on the page, line by line, while the archive holds it (else None).

        What a perfect read of the page would return: the reference fidelity is measured
        against, and what a viewer diffs the recalled text with.
        """
        page = self.store.page(self.id, page_id)
        lines = self.store.page_blobs(page.id).layout
        if any(not line.text and line.end > line.start for line in lines):
            return None
        return restore_placeholders("\n".join(line.text for line in lines))

    def page_png(self, page_id: int) -> bytes:
        """The page image at its current mode, as PNG bytes."""
        self.store.page(self.id, page_id)  # raises PageNotFound for another session's page
        return self.store.page_blobs(page_id).png

    def recall(self, page_id: int | None = None, *, query: str | None = None, limit: int = 5) -> Any:
        """Decoded text of one page (str), or with `query=` the best-matching pages (Hits)."""
        if (page_id is None) == (query is None):
            raise InputError("pass either a page id or query=..., not both")
        if query is not None:
            return self.search(query, limit=limit)
        return self.recall_page(page_id).text  # type: ignore[arg-type]

    def recall_page(self, page_id: int, *, refresh: bool = False, rehearse: bool | None = None) -> Recall:
        """Read one page back with everything known about how it was read.

        Args:
            refresh: Run OCR on the page again and replace the cached text ("read again").
            rehearse: Sharpen the page after reading it (see `rehearse`); default the
                memory's `rehearse` option. The text returned is the page as it was read.
        """
        recall = recall_page(self.store, self.memory.decoder, self.id, page_id, refresh=refresh)
        assert recall is not None
        if self.memory.rehearse if rehearse is None else rehearse:
            self.rehearse(page_id)
        return recall

    def recall_turns(self, turn_ids: Iterable[int]) -> list[RecalledTurn]:
        """Turns read back whole and as typed, in the order asked: each stitched over the pages
        that hold it (a turn longer than a page spans several), wraps removed and its own line
        breaks kept, with whether every line of it passed its check (`RecalledTurn.verified`).
        A turn not paged yet comes back as stored.

        Raises InputError for a turn id not in this session.
        """
        ids = list(turn_ids)
        if any(isinstance(t, bool) or not isinstance(t, int) for t in ids):
            raise InputError("turn ids must be integers")
        return recall_turns(
            self.store, self.memory.decoder, self.id, ids, self.memory.decoder.turn_labels(self.id)
        )

    def rehearse(self, page_id: int) -> Mode | None:
        """Refresh a page one rung sharper from the archive, as remembering does; returns its
        new mode, or None where it was not sharpened.

        The page counts as used now (the policies age it again from here: it is forgotten
        after pages used longer ago) and is typeset again from its turns at its creation
        settings, one rung above its mode (never sharper than it was made); it keeps its id,
        and the policy re-plans at once, which may age another page. It is only counted as
        used where it is at its creation mode or where the policy would age it straight back
        (no room in the budget), and left entirely as it is where the archive no longer holds
        its turns (it can only be read as it is).
        """
        mem = self.memory
        with self.store.transaction():
            done = mem.pager.rehearse(self.id, page_id, mem.policy)
        if done is None:
            return None
        mode, aged = done
        mem.decoder.schedule([page_id] + [pid for pid, _, _ in aged])
        log.debug("rehearsed page %s to %s; %s aged", page_id, mode.value, len(aged))
        return mode

    def cached_recall(self, page_id: int) -> Recall | None:
        """The page as it was already read, or None if it was not decoded yet (never runs OCR)."""
        return recall_page(self.store, self.memory.decoder, self.id, page_id, cached_only=True)

    def search(self, query: str, *, limit: int = 5, wait: bool = False) -> Hits:
        """Rank pages by how well their decoded text and verbatim strings match `query`.

        Reads the search index, never the archive, and never runs OCR itself: pages not yet
        decoded are queued and counted in `Hits.unsearched`, unless `wait` decodes them first.
        """
        pages = self.pages()
        if wait:
            self.memory.decoder.decode([p.id for p in pages])
        return search(self.store, self.memory.decoder, pages, self.id, query, limit)

    def context(self, budget_tokens: int = 4000, *, consumer: str | None = None) -> Context:
        """Recent turns as text, then pages newest first as images, within `budget_tokens`.

        A page is shown as its source text where that is cheaper and the archive holds it.
        Nothing is dropped silently: what does not fit is listed in `omitted_*`.
        """
        return build_context(
            self.store, self.id, self._pricing(consumer), budget_tokens, self.memory.public_page, public_turn
        )

    def stats(self, *, consumer: str | None = None) -> Stats:
        """Token accounting, priced exactly as `context()` and the budget price it."""
        stats = build_stats(self.store, self.id, self._pricing(consumer))
        failed = self.memory.decoder.failed_pages()
        if failed:
            mine = tuple(p.id for p in self.store.pages(self.id) if p.id in failed)
            stats = dataclasses.replace(stats, failed_pages=mine)
        return stats

    def drop_archive(self) -> int:
        """Forget the source text of paged turns; pages and verbatim strings remain."""
        return self.store.drop_archive(self.id)

    # -- async twins -----------------------------------------------------------------------

    async def aadd_turn(self, role: str, content: str, **kwargs: Any) -> int:
        return await asyncio.to_thread(self.add_turn, role, content, **kwargs)

    async def aadd_turns(self, turns: Iterable[Any], *, skip_existing: bool = False) -> list[int]:
        return await asyncio.to_thread(self.add_turns, list(turns), skip_existing=skip_existing)

    async def acompress(self, *, flush: bool = False) -> CompressResult:
        return await asyncio.to_thread(self.compress, flush=flush)

    async def arecall(self, page_id: int | None = None, *, query: str | None = None, limit: int = 5) -> Any:
        return await asyncio.to_thread(self.recall, page_id, query=query, limit=limit)

    async def arecall_page(
        self, page_id: int, *, refresh: bool = False, rehearse: bool | None = None
    ) -> Recall:
        return await asyncio.to_thread(self.recall_page, page_id, refresh=refresh, rehearse=rehearse)

    async def arecall_turns(self, turn_ids: Iterable[int]) -> list[RecalledTurn]:
        return await asyncio.to_thread(self.recall_turns, list(turn_ids))

    async def arehearse(self, page_id: int) -> Mode | None:
        return await asyncio.to_thread(self.rehearse, page_id)

    async def acached_recall(self, page_id: int) -> Recall | None:
        return await asyncio.to_thread(self.cached_recall, page_id)

    async def asearch(self, query: str, *, limit: int = 5, wait: bool = False) -> Hits:
        return await asyncio.to_thread(self.search, query, limit=limit, wait=wait)

    async def acontext(self, budget_tokens: int = 4000, *, consumer: str | None = None) -> Context:
        return await asyncio.to_thread(self.context, budget_tokens, consumer=consumer)

    async def apages(self) -> list[Page]:
        return await asyncio.to_thread(self.pages)

    async def astats(self, *, consumer: str | None = None) -> Stats:
        return await asyncio.to_thread(self.stats, consumer=consumer)

    async def apage_png(self, page_id: int) -> bytes:
        return await asyncio.to_thread(self.page_png, page_id)

    async def adelete(self) -> Deleted:
        return await asyncio.to_thread(self.delete)

    async def aexists(self) -> bool:
        return await asyncio.to_thread(self.exists)

    async def alookup_external_ids(self, external_ids: Iterable[str]) -> dict[str, int]:
        return await asyncio.to_thread(self.lookup_external_ids, list(external_ids))

    async def aturns(self) -> list[Turn]:
        return await asyncio.to_thread(self.turns)

    async def apage(self, page_id: int) -> Page:
        return await asyncio.to_thread(self.page, page_id)

    async def apage_source(self, page_id: int) -> str | None:
        return await asyncio.to_thread(self.page_source, page_id)

    async def adrop_archive(self) -> int:
        return await asyncio.to_thread(self.drop_archive)


def _decoder(
    store: Store,
    backend: Callable[[], Backend],
    when: DecodeWhen,
    backend_name: Callable[[], str],
    workers: int,
    pool: DecodePool,
) -> Decoder:
    """The decoding strategy `when` names: the workers' queue, or this process."""
    if when == "queue":
        from .workers.queued import QueueDecoder

        return QueueDecoder(store, backend, backend_name=backend_name)
    return LocalDecoder(store, backend, when, backend_name=backend_name, workers=workers, pool=pool)
