"""OpticalMemory and Session: add turns, compress them into pages, age, recall, build context.

The memory takes its collaborators (store, backend, policy) in the constructor. OCR cost is
kept off the recall path: each page is decoded once when it is created or aged (on a
background thread by default) and recall reads the cached text.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import UTC, datetime
from typing import Any, Literal

from PIL import Image
from rapidfuzz import fuzz

from . import calibration
from .backends import DEFAULT_BACKEND, Backend, PageInput, get_backend
from .errors import BackendError, InputError
from .modes import AgingPolicy, BudgetPolicy, Mode, PageState, parse_policy
from .records import (
    CompressResult,
    Context,
    ContextItem,
    ModeStats,
    Page,
    Recall,
    RecallHit,
    Stats,
    Turn,
    page_caption,
)
from .render import RenderedPage, Span, TurnText, paginate, resize_to, restore_placeholders
from .store import DecodedRecord, NewPage, PageRecord, Store, TurnRecord, utcnow
from .tokens import DEFAULT_ENCODING, count_tokens
from .verbatim import VerbatimItem, extract, repair

log = logging.getLogger("optimem")

ROLES = frozenset({"user", "assistant", "system", "tool"})
MAX_TURN_CHARS = 4_000_000
DecodeWhen = Literal["background", "now", "lazy"]

#: The mode new pages are typeset at (see OpticalMemory's creation_mode).
DEFAULT_CREATION_MODE = Mode.SMALL

#: A page that fills less than this share of its height waits for more turns (unless flushed).
MIN_FILL = 0.85
#: ...but when the session is over its token budget, a partial page is made as soon as its
#: text costs this many times the page's positions: paging it then saves more than it wastes.
PARTIAL_MIN_RATIO = 2.0


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def validate_turn(role: str, content: str, name: str | None = None) -> None:
    """Raise InputError for a turn optimem would store wrongly. See README: bad input."""
    if not isinstance(role, str) or role not in ROLES:
        raise InputError(f"unknown role {role!r}; use one of {', '.join(sorted(ROLES))}")
    if not isinstance(content, str):
        raise InputError(f"turn content must be str, got {type(content).__name__}")
    if not content.strip():
        raise InputError("empty or whitespace-only turn: there is nothing to remember")
    if len(content) > MAX_TURN_CHARS:
        raise InputError(
            f"turn of {len(content):,} characters exceeds the {MAX_TURN_CHARS:,} limit; split it"
        )
    for text in (content, name or ""):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"turn holds a lone surrogate at offset {exc.start} ({text[exc.start]!r}): "
                "not valid Unicode text; decode your input with errors='replace'"
            ) from None
    if name is not None and (not name.strip() or len(name) > 200 or "\n" in name):
        raise InputError("name must be a short single-line non-empty string")


class OpticalMemory:
    """Optical memory over one database: `mem.session(id)` gives a Session.

    Args:
        path: SQLite file path, ``sqlite:///path`` URL, ``":memory:"`` or a Store.
        backend: OCR backend name (``"tesseract"``, ``"rapidocr"``, ``"deepseek-ocr2"`` …)
            or a Backend instance.
        policy: An AgingPolicy or its short form (``"budget:4000"``, ``"turns"``,
            ``"clock"``, ``"none"``). Default: keep each session within 4000 tokens.
        creation_mode: The mode pages are typeset at; they age down the ladder from there.
            Default Small: measured on the CPU backends, chat typeset at 8 px on a 640 px
            page compresses 13x at 97.5%, against 9.6x on a 1280 px page (short paragraphs
            waste more of a wide line), and a page shrunk one rung keeps ~88%.
        keep_recent_turns: Newest turns left as text by `compress()`.
        archive: Keep the source text of paged turns (``False`` drops it after paging).
        decode: When to OCR new and aged pages: ``"background"`` (default), ``"now"``
            (inside compress) or ``"lazy"`` (on first recall).
        encoding: tiktoken encoding for text tokens.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | Store = "optimem.db",
        *,
        backend: str | Backend = DEFAULT_BACKEND,
        policy: AgingPolicy | str | None = None,
        creation_mode: Mode | str = DEFAULT_CREATION_MODE,
        keep_recent_turns: int = 6,
        archive: bool = True,
        decode: DecodeWhen = "background",
        encoding: str = DEFAULT_ENCODING,
    ) -> None:
        if keep_recent_turns < 0:
            raise InputError("keep_recent_turns must be ≥ 0")
        if decode not in ("background", "now", "lazy"):
            raise InputError(f"decode must be 'background', 'now' or 'lazy', got {decode!r}")
        self.store = path if isinstance(path, Store) else Store(path)
        self.backend = get_backend(backend)
        if policy is None:
            policy = BudgetPolicy()
        self.policy = parse_policy(policy) if isinstance(policy, str) else policy
        self.creation_mode = Mode.parse(creation_mode)
        self.keep_recent_turns = keep_recent_turns
        self.archive = archive
        self.decode_when: DecodeWhen = decode
        self.encoding = encoding
        count_tokens("", encoding)  # fail early on an unknown encoding
        self._executor: ThreadPoolExecutor | None = None
        self._pending: set[Future] = set()
        self._pending_lock = threading.Lock()

    def session(self, session_id: str) -> Session:
        """The session called `session_id`, created on first write."""
        if not isinstance(session_id, str) or not session_id.strip() or len(session_id) > 256:
            raise InputError("session id must be a non-empty string of at most 256 characters")
        return Session(self, session_id)

    def sessions(self) -> list[str]:
        return self.store.session_ids()

    # -- background decoding ---------------------------------------------------------------

    def _schedule(self, page_ids: Sequence[int]) -> None:
        if not page_ids or self.decode_when == "lazy":
            return
        if self.decode_when == "now":
            self._decode_and_cache_many(page_ids)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="optimem-decode")
        future = self._executor.submit(self._decode_and_cache_many, list(page_ids))
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: Future) -> None:
        with self._pending_lock:
            self._pending.discard(future)
        exc = future.exception()
        if exc is not None:
            log.warning("background decode failed (recall will retry): %s", exc)

    def wait(self, timeout: float | None = None) -> None:
        """Block until background decoding has caught up (failures are logged, not raised)."""
        with self._pending_lock:
            pending = list(self._pending)
        futures_wait(pending, timeout=timeout)

    def close(self) -> None:
        """Finish background decoding and close the database."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self.store.close()

    def __enter__(self) -> OpticalMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _decode_and_cache_many(self, page_ids: Sequence[int]) -> list[DecodedRecord]:
        records = []
        pages = [self._page_by_id(pid) for pid in page_ids]
        todo = [p for p in pages if self.store.get_decoded(p.id, p.mode, self.backend.name) is None]
        if not todo:
            return []
        inputs = [self.page_input(p) for p in todo]
        results = self.backend.decode_many(inputs)
        for page, result in zip(todo, results, strict=True):
            record = DecodedRecord(
                page_id=page.id,
                mode=page.mode,
                backend=self.backend.name,
                text=restore_placeholders(result.text),
                lines=tuple(restore_placeholders(x) for x in result.lines)
                if result.lines is not None
                else None,
                confidence=float(result.confidence),
                seconds=float(result.seconds),
            )
            self.store.put_decoded(record)
            records.append(record)
        return records

    def _page_by_id(self, page_id: int) -> PageRecord:
        row = self.store.db.execute("SELECT session_id FROM pages WHERE id = ?", (int(page_id),)).fetchone()
        if row is None:
            from .errors import PageNotFound

            raise PageNotFound(f"no page {page_id}")
        return self.store.page(row[0], page_id)


class Session:
    """One conversation's memory. Obtain with `OpticalMemory.session(id)`."""

    def __init__(self, memory: OpticalMemory, session_id: str) -> None:
        self.memory = memory
        self.id = session_id

    @property
    def store(self) -> Store:
        return self.memory.store

    # -- turns -----------------------------------------------------------------------------

    def add_turn(
        self,
        role: str,
        content: str,
        *,
        name: str | None = None,
        created_at: datetime | str | None = None,
        metadata: dict | None = None,
    ) -> int:
        """Append one turn; returns its id. Raises InputError for bad input (nothing stored)."""
        return self.add_turns(
            [
                {
                    "role": role,
                    "content": content,
                    "name": name,
                    "created_at": created_at,
                    "metadata": metadata,
                }
            ]
        )[0]

    def add_turns(self, turns: Iterable[tuple[str, str] | dict[str, Any] | Turn]) -> list[int]:
        """Append turns in order, all or nothing; returns their ids."""
        rows = []
        for i, turn in enumerate(turns):
            if isinstance(turn, Turn):
                turn = {
                    "role": turn.role,
                    "content": turn.content,
                    "name": turn.name,
                    "created_at": turn.created_at,
                    "metadata": turn.metadata,
                }
            elif isinstance(turn, tuple | list):
                if len(turn) != 2:
                    raise InputError(f"turn {i}: expected (role, content), got {len(turn)} items")
                turn = {"role": turn[0], "content": turn[1]}
            elif not isinstance(turn, dict):
                raise InputError(f"turn {i}: expected (role, content), a dict or a Turn")
            role, content, name = turn.get("role"), turn.get("content"), turn.get("name")
            try:
                validate_turn(role, content, name)  # type: ignore[arg-type]
            except InputError as exc:
                raise InputError(f"turn {i}: {exc}") from None
            assert isinstance(content, str)
            created = turn.get("created_at")
            if isinstance(created, datetime):
                created = (created if created.tzinfo else created.replace(tzinfo=UTC)).isoformat()
            elif created is None:
                created = utcnow()
            else:
                try:
                    created = datetime.fromisoformat(str(created)).isoformat()
                except ValueError:
                    raise InputError(f"turn {i}: created_at {created!r} is not ISO 8601") from None
            rows.append(
                {
                    "role": role,
                    "content": content,
                    "name": name,
                    "sha256": hashlib.sha256(content.encode("utf-8")).hexdigest(),
                    "text_tokens": count_tokens(content, self.memory.encoding),
                    "created_at": created,
                    "metadata": turn.get("metadata"),
                }
            )
        if not rows:
            return []
        return self.store.add_turns(self.id, rows)

    def turns(self) -> list[Turn]:
        return [_turn(t) for t in self.store.turns(self.id)]

    # -- compress --------------------------------------------------------------------------

    def compress(self, *, flush: bool = False) -> CompressResult:
        """Page old turns and age pages by the policy, in one transaction each.

        Args:
            flush: Also page the newest turns and a partly filled last page.
        """
        mem = self.memory
        backend = mem.backend
        with self.store.transaction():
            before = self._context_cost()
            created = self._page_turns(flush=flush)
            budget = getattr(mem.policy, "max_tokens", None)
            if not flush and budget is not None and self._context_cost() > budget:
                created += self._page_turns(flush=False, partial_ok=True)
        with self.store.transaction():
            aged = self._age()
            after = self._context_cost()
        if mem.archive is False:
            self.store.drop_archive(self.id)
        mem._schedule(created + [pid for pid, _, _ in aged])
        over = False
        if isinstance(mem.policy, BudgetPolicy):
            over = after > mem.policy.max_tokens
        log.debug("compress %s with %s: %s pages, %s aged", self.id, backend.name, len(created), len(aged))
        return CompressResult(created, aged, before, after, over)

    def _context_cost(self) -> int:
        unpaged = sum(t.text_tokens for t in self.store.turns(self.id, paged=False))
        cost = self.memory.backend.positions
        return unpaged + sum(cost(p.mode) for p in self.store.pages(self.id))

    def _page_turns(self, *, flush: bool, partial_ok: bool = False) -> list[int]:
        """Typeset eligible unpaged turns onto new pages; returns their ids.

        A last page filled less than MIN_FILL waits for more turns, unless `flush`, or
        `partial_ok` and it already holds PARTIAL_MIN_RATIO times its positions in text.
        """
        mem = self.memory

        def eligible_turns() -> list[TurnRecord]:
            unpaged = self.store.turns(self.id, paged=False)
            return unpaged if flush else unpaged[: max(0, len(unpaged) - mem.keep_recent_turns)]

        eligible = eligible_turns()
        if not eligible:
            return []
        # a half-empty last page takes the new turns too, instead of staying half empty
        reopened = self.store.reopen_last_page(self.id, mem.creation_mode, MIN_FILL)
        if reopened is not None:
            eligible = eligible_turns()
        # a turn already partly on a page (split across pages) continues where it stopped
        resume = self._resume_offsets([t.id for t in eligible])
        texts = [TurnText(t.id, t.role, (t.content or "")[resume.get(t.id, 0) :], t.name) for t in eligible]
        options = calibration.render_options(mem.backend.name, mem.creation_mode)
        rendered = paginate(texts, options)
        by_id = {t.id: t for t in eligible}
        contents = [self._page_contents(page, resume, by_id) for page in rendered]
        if not flush and reopened is None and rendered and _fill(rendered[-1]) < MIN_FILL:
            page_cost = mem.backend.positions(mem.creation_mode)
            worth_it = partial_ok and contents[-1][1] >= PARTIAL_MIN_RATIO * page_cost
            if not worth_it:  # wait for more turns rather than pay for a half-empty page
                rendered, contents = rendered[:-1], contents[:-1]
        new_pages: list[NewPage] = []
        done: set[int] = set()
        for page, (spans, text_tokens, chars, verbatim) in zip(rendered, contents, strict=True):
            done.update(s.turn_id for s in spans if s.end >= len(by_id[s.turn_id].content or ""))
            last = by_id[spans[-1].turn_id]
            rep = None
            if mem.backend.capabilities.stores_representation:
                rep = mem.backend.encode(
                    PageInput(page.image, mem.creation_mode, page.lines, options.font_px, page.has_cjk)
                )
            new_pages.append(
                NewPage(
                    mode=mem.creation_mode,
                    canvas=options.canvas,
                    font_px=options.font_px,
                    has_cjk=page.has_cjk,
                    png=png_bytes(page.image),
                    lines=page.lines,
                    spans=spans,
                    text_tokens=text_tokens,
                    chars=chars,
                    verbatim=verbatim,
                    last_turn_seq=last.seq,
                    last_turn_at=last.created_at.isoformat(),
                    representation=rep,
                    representation_backend=mem.backend.fingerprint() if rep is not None else None,
                )
            )
        if not new_pages:
            return []
        return self.store.insert_pages(
            self.id, new_pages, sorted(done), reuse_id=reopened[0] if reopened else None
        )

    def _page_contents(
        self, page: RenderedPage, resume: dict[int, int], by_id: dict[int, TurnRecord]
    ) -> tuple[list[Span], int, int, list[VerbatimItem]]:
        """(spans in turn offsets, text tokens, characters, verbatim strings) of a page."""
        enc = self.memory.encoding
        spans = [
            Span(s.turn_id, s.start + resume.get(s.turn_id, 0), s.end + resume.get(s.turn_id, 0))
            for s in page.spans
        ]
        text_tokens = chars = 0
        verbatim: list[VerbatimItem] = []
        for s in spans:
            piece = (by_id[s.turn_id].content or "")[s.start : s.end]
            text_tokens += count_tokens(piece, enc)
            chars += len(piece)
            verbatim += [
                VerbatimItem(v.kind, v.value, v.turn_id, v.offset + s.start)
                for v in extract(piece, s.turn_id)
            ]
        return spans, text_tokens, chars, verbatim

    def _resume_offsets(self, turn_ids: Sequence[int]) -> dict[int, int]:
        if not turn_ids:
            return {}
        marks = ",".join("?" * len(turn_ids))
        rows = self.store.db.execute(
            f'SELECT turn_id, MAX("end") FROM page_spans WHERE turn_id IN ({marks}) GROUP BY turn_id',
            list(turn_ids),
        )
        return {r[0]: r[1] for r in rows}

    def _age(self) -> list[tuple[int, Mode, Mode]]:
        mem = self.memory
        pages = self.store.pages(self.id)
        if not pages:
            return []
        total_turns = self.store.turn_count(self.id)
        cost = mem.backend.positions
        states = [
            PageState(p.id, p.mode, cost(p.mode), total_turns - p.last_turn_seq, p.last_turn_at)
            for p in pages
        ]
        unpaged = sum(t.text_tokens for t in self.store.turns(self.id, paged=False))
        plan = mem.policy.plan(states, unpaged, datetime.now(UTC), cost=cost)
        aged = []
        for page in pages:
            target = plan.targets.get(page.id)
            if target is None or target.rank <= page.mode.rank:
                continue  # forgetting is one way
            png, lines, _, _ = self.store.page_blobs(page.id)
            image = resize_to(Image.open(io.BytesIO(png)), target.canvas)
            rep = None
            if mem.backend.capabilities.stores_representation:
                factor = target.canvas / page.creation_canvas
                rep = mem.backend.encode(
                    PageInput(
                        image,
                        target,
                        tuple(x.scaled(factor) for x in lines),
                        page.font_px * factor,
                        page.has_cjk,
                    )
                )
            self.store.set_page_mode(
                page.id,
                target,
                png_bytes(image),
                rep,
                mem.backend.fingerprint() if rep is not None else None,
            )
            aged.append((page.id, page.mode, target))
        return aged

    # -- reading ---------------------------------------------------------------------------

    def _public(self, p: PageRecord) -> Page:
        return _public_page(p, self.memory.backend.positions(p.mode))

    def pages(self) -> list[Page]:
        """Every page of the session, oldest first."""
        return [self._public(p) for p in self.store.pages(self.id)]

    def page(self, page_id: int) -> Page:
        return self._public(self.store.page(self.id, page_id))

    def page_png(self, page_id: int) -> bytes:
        """The page image at its current mode, as PNG bytes."""
        self.store.page(self.id, page_id)  # raises PageNotFound for another session's page
        return self.store.page_blobs(page_id)[0]

    def recall(self, page_id: int | None = None, *, query: str | None = None, limit: int = 5):
        """Decoded text of one page (str), or with `query=` the best-matching pages (list)."""
        if (page_id is None) == (query is None):
            raise InputError("pass either a page id or query=..., not both")
        if query is not None:
            return self.search(query, limit=limit)
        return self.recall_page(page_id).text  # type: ignore[arg-type]

    def recall_page(self, page_id: int) -> Recall:
        """Read one page back with everything known about how it was read."""
        mem = self.memory
        page = self.store.page(self.id, page_id)
        record = self.store.get_decoded(page.id, page.mode, mem.backend.name)
        cached = record is not None
        if record is None:
            records = mem._decode_and_cache_many([page.id])
            record = records[0] if records else self.store.get_decoded(page.id, page.mode, mem.backend.name)
            if record is None:
                raise BackendError(f"page {page_id} could not be decoded by {mem.backend.name}")
        items = self.store.verbatim(page.id)
        text = repair(record.text, items)
        turns: dict[int, str] = {}
        if record.lines is not None:
            _, layout, _, _ = self.store.page_blobs(page.id)
            if len(layout) == len(record.lines):
                for line, read in zip(layout, record.lines, strict=True):
                    turns[line.turn_id] = (turns.get(line.turn_id, "") + "\n" + read).lstrip("\n")
                turns = {tid: repair(t, [v for v in items if v.turn_id == tid]) for tid, t in turns.items()}
        return Recall(
            page_id=page.id,
            text=text,
            raw_text=record.text,
            mode=page.mode,
            backend=record.backend,
            confidence=record.confidence,
            cached=cached,
            seconds=record.seconds,
            turns=turns,
            verbatim=items,
        )

    def search(self, query: str, *, limit: int = 5) -> list[RecallHit]:
        """Rank pages by how well their recalled text and verbatim strings match `query`.

        Works from decoded text, never from the source archive, so it still works after the
        archive is dropped; fuzzy matching tolerates OCR misreads.
        """
        if not isinstance(query, str) or not query.strip():
            raise InputError("query must be a non-empty string")
        if limit <= 0:
            raise InputError("limit must be positive")
        terms = [t for t in unicodedata.normalize("NFKC", query).lower().split() if len(t) > 1] or [
            query.lower().strip()
        ]
        hits = []
        for page in self.store.pages(self.id):
            recall = self.recall_page(page.id)
            haystack = (recall.text + "\n" + " ".join(v.value for v in recall.verbatim)).lower()
            scores = [fuzz.partial_ratio(term, haystack) / 100 for term in terms]
            score = sum(scores) / len(scores)
            if score < 0.6:
                continue
            hits.append(
                RecallHit(page.id, round(score, 4), _snippet(recall.text, terms), page.mode, page.turn_ids)
            )
        hits.sort(key=lambda h: (-h.score, -h.page_id))
        return hits[:limit]

    def context(self, budget_tokens: int = 4000) -> Context:
        """Recent turns as text, then pages newest first as images, within `budget_tokens`.

        Nothing is dropped silently: what does not fit is listed in `omitted_*`.
        """
        if not isinstance(budget_tokens, int) or budget_tokens <= 0:
            raise InputError(f"budget_tokens must be a positive integer, got {budget_tokens!r}")
        enc = self.memory.encoding
        left = budget_tokens
        texts: list[ContextItem] = []
        omitted_turns: list[int] = []
        for t in reversed(self.store.turns(self.id, paged=False)):
            cost = t.text_tokens
            if cost <= left and not omitted_turns:
                texts.append(ContextItem("text", cost, turn=_turn(t)))
                left -= cost
            else:
                omitted_turns.append(t.id)
        pages_in: list[ContextItem] = []
        omitted_pages: list[int] = []
        for p in reversed(self.store.pages(self.id)):
            page = self._public(p)
            cost = page.positions + count_tokens(page_caption(page), enc)
            if cost <= left and not omitted_pages:
                pages_in.append(ContextItem("page", cost, page=page, png=self.store.page_blobs(p.id)[0]))
                left -= cost
            else:
                omitted_pages.append(p.id)
        items = list(reversed(pages_in)) + list(reversed(texts))
        return Context(items, budget_tokens, sorted(omitted_turns), sorted(omitted_pages))

    def stats(self) -> Stats:
        cost = self.memory.backend.positions
        turns = self.store.turns(self.id)
        pages = self.store.pages(self.id)
        per_mode: dict[Mode, ModeStats] = {}
        for mode in Mode:
            ps = [p for p in pages if p.mode is mode]
            if ps:
                per_mode[mode] = ModeStats(
                    len(ps), sum(p.text_tokens for p in ps), sum(cost(p.mode) for p in ps)
                )
        return Stats(
            turns=len(turns),
            text_tokens=sum(t.text_tokens for t in turns),
            unpaged_tokens=sum(t.text_tokens for t in turns if not t.paged),
            paged_text_tokens=sum(p.text_tokens for p in pages),
            positions=sum(cost(p.mode) for p in pages),
            per_mode=per_mode,
        )

    def drop_archive(self) -> int:
        """Forget the source text of paged turns; pages and verbatim strings remain."""
        return self.store.drop_archive(self.id)

    # -- async twins -----------------------------------------------------------------------

    async def aadd_turn(self, role: str, content: str, **kwargs: Any) -> int:
        return await asyncio.to_thread(self.add_turn, role, content, **kwargs)

    async def acompress(self, *, flush: bool = False) -> CompressResult:
        return await asyncio.to_thread(self.compress, flush=flush)

    async def arecall(self, page_id: int | None = None, *, query: str | None = None, limit: int = 5):
        return await asyncio.to_thread(self.recall, page_id, query=query, limit=limit)

    async def acontext(self, budget_tokens: int = 4000) -> Context:
        return await asyncio.to_thread(self.context, budget_tokens)


def _fill(page: RenderedPage) -> float:
    """Share of the page's height that holds text (the same measure the store uses)."""
    if not page.lines:
        return 0.0
    return page.lines[-1].y1 / page.options.canvas


def _snippet(text: str, terms: Sequence[str], width: int = 160) -> str:
    lower = text.lower()
    best = max(terms, key=lambda t: fuzz.partial_ratio(t, lower))
    align = fuzz.partial_ratio_alignment(best, lower)
    centre = align.dest_start if align else 0
    start = max(0, centre - width // 2)
    return " ".join(text[start : start + width].split())


def _turn(t: TurnRecord) -> Turn:
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
    )


def _public_page(p: PageRecord, positions: int) -> Page:
    return Page(
        id=p.id,
        mode=p.mode,
        creation_mode=p.creation_mode,
        turn_ids=p.turn_ids,
        text_tokens=p.text_tokens,
        positions=positions,
        chars=p.chars,
        created_at=p.created_at,
        aged_at=p.aged_at,
        font_px=p.font_px,
        canvas=p.canvas,
        last_turn_seq=p.last_turn_seq,
    )
