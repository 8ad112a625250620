"""Paging: typeset waiting turns onto pages, reopen a half-empty last page, age pages down the ladder.

Everything here runs inside the store transaction that `Session.compress()` opens, so a
compress step lands whole or not at all.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from PIL import Image

from ..aging.policies import AgingPlan, AgingPolicy, PageState
from ..aging.pricing import Pricing, page_caption
from ..aging.salience import salience
from ..aids.page_aids import page_aids
from ..backends import Backend, PageInput
from ..layout import LineBox, PageAids, Span, VerbatimItem
from ..modes import Mode
from ..records import page_text
from ..store import NewPage, Store, StoredPage, StoredTurn, TurnTotals
from ..tokens import count_tokens
from . import calibration
from .typeset import PageLayout, RenderedPage, TurnText, lay_out, paginate, resize_to
from .verbatim import extract

log = logging.getLogger("optimem")

#: Page saliences the pager remembers (each is computed once per page from the store).
SALIENCE_CACHE = 100_000

#: A page that fills less than this share of its height waits for more turns (unless flushed).
MIN_FILL = 0.85
#: ...but when the session is over its token budget, a partial page is made as soon as its
#: text costs this many times the page's positions: paging it then saves more than it wastes.
PARTIAL_MIN_RATIO = 2.0


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


@dataclass(frozen=True)
class PageCost:
    """What one page costs in context and how it is shown (see `page_costs`)."""

    page: StoredPage
    image: int
    """Image tokens at the current mode plus the caption."""
    as_text: int | None
    """Tokens of the page's source text (caption included), when the archive holds all of it."""
    text: str | None

    @property
    def tokens(self) -> int:
        return self.image if self.as_text is None else min(self.image, self.as_text)

    @property
    def presented(self) -> str:
        return "text" if self.as_text is not None and self.as_text < self.image else "image"


def page_costs(store: Store, session_id: str, pricing: Pricing) -> tuple[TurnTotals, list[PageCost]]:
    """(the session's turn totals, every page priced) — the one computation behind compress's
    budget, the policy's page states, `stats()` and `context()`.

    Only the turns of pages whose text might be cheaper than their image are loaded: pricing
    runs several times a compress, and loading every turn made it grow with the session.
    """
    totals = store.turn_totals(session_id)
    pages = store.pages(session_id)
    images = [pricing.page(page) for page in pages]
    # a page's text can only be cheaper than its image when its tokens are close to it
    maybe = [
        page.text_tokens - 2 * len(page.spans) < image for page, image in zip(pages, images, strict=True)
    ]
    wanted = {s.turn_id for page, m in zip(pages, maybe, strict=True) if m for s in page.spans}
    by_id = {t.id: t for t in store.turns(session_id, ids=wanted)} if wanted else {}
    out = []
    for page, image, m in zip(pages, images, maybe, strict=True):
        as_text = text = None
        if m:
            pieces: list[tuple[str, str | None, str]] = []
            for span in page.spans:
                turn = by_id.get(span.turn_id)
                if turn is None or turn.content is None:
                    pieces = []
                    break
                pieces.append((turn.role, turn.name, turn.content[span.start : span.end]))
            if pieces:
                text = page_text(pieces)
                as_text = pricing.text(f"{page_caption(page)}\n{text}")
        out.append(PageCost(page, image, as_text, text))
    return totals, out


class Pager:
    """Makes and ages the pages of one session."""

    def __init__(
        self,
        store: Store,
        backend: Callable[[], Backend],
        pricing: Callable[[], Pricing],
        *,
        creation_mode: Mode,
        keep_recent_turns: int,
        encoding: str,
        reading_aids: bool = True,
    ) -> None:
        self.store = store
        self.reading_aids = reading_aids
        self._backend = backend
        self._pricing = pricing
        self.creation_mode = creation_mode
        self.keep_recent_turns = keep_recent_turns
        self.encoding = encoding
        self._salience: dict[tuple[int, datetime], float] = {}

    # -- typesetting -----------------------------------------------------------------------

    def page_turns(self, session_id: str, *, flush: bool, partial_ok: bool = False) -> list[int]:
        """Typeset eligible unpaged turns onto new pages; returns their ids.

        A last page filled less than MIN_FILL waits for more turns, unless `flush`, or
        `partial_ok` and it already holds PARTIAL_MIN_RATIO times its positions in text.
        """
        backend = self._backend()

        def eligible_turns() -> list[StoredTurn]:
            unpaged = self.store.turns(session_id, paged=False)
            return unpaged if flush else unpaged[: max(0, len(unpaged) - self.keep_recent_turns)]

        eligible = eligible_turns()
        if not eligible:
            return []
        # a half-empty last page takes the new turns too, instead of staying half empty
        reopened = self._reopen_last_page(session_id)
        if reopened is not None:
            eligible = eligible_turns()
        # a turn already partly on a page (split across pages) continues where it stopped
        resume = self.store.span_ends([t.id for t in eligible])
        texts = [TurnText(t.id, t.role, (t.content or "")[resume.get(t.id, 0) :], t.name) for t in eligible]
        options = calibration.render_options(backend.name, self.creation_mode)
        laid_out = lay_out(texts, options)
        by_id = {t.id: t for t in eligible}
        # only the pages kept are counted and drawn: a part-filled last page usually waits
        tail = None  # the last page's contents, where deciding whether it waits counted them
        if laid_out and not flush and reopened is None and laid_out[-1].fill < MIN_FILL:
            tail = self._page_contents(laid_out[-1], resume, by_id) if partial_ok else None
            if tail is None or tail[1] < PARTIAL_MIN_RATIO * backend.positions(self.creation_mode):
                laid_out = laid_out[:-1]  # wait for more turns rather than pay for a half-empty page
                tail = None
        contents = [
            tail if tail is not None and i == len(laid_out) - 1 else self._page_contents(page, resume, by_id)
            for i, page in enumerate(laid_out)
        ]
        rendered = [page.draw() for page in laid_out]
        new_pages: list[NewPage] = []
        done: set[int] = set()
        for page, (spans, text_tokens, chars, verbatim) in zip(rendered, contents, strict=True):
            done.update(s.turn_id for s in spans if s.end >= len(by_id[s.turn_id].content or ""))
            last = by_id[spans[-1].turn_id]
            rep = None
            if backend.capabilities.stores_representation:
                rep = backend.encode(
                    PageInput(page.image, self.creation_mode, page.lines, options.font_px, page.has_cjk)
                )
            new_pages.append(
                NewPage(
                    mode=self.creation_mode,
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
                    representation_backend=backend.fingerprint() if rep is not None else None,
                    aids=self._aids(page),
                )
            )
        if not new_pages:
            return []
        return self.store.insert_pages(session_id, new_pages, sorted(done), reuse_id=reopened)

    def _aids(self, page: RenderedPage) -> PageAids | None:
        if not self.reading_aids:
            return None
        drawn = [b.text for b in page.lines]
        return page_aids(drawn, "\n".join(drawn))

    def _reopen_last_page(self, session_id: str) -> int | None:
        """Take back the session's last page if it is partly filled; its id is given to the
        first page typeset next, so ids users hold stay valid.

        An aged last page is taken back too while the archive holds every turn on it: it is
        typeset again from the source with the new turns and the policy ages it again. Under
        a tight budget a partial page is aged as soon as it is made; never reopening it left
        a trail of small pages, each costing a whole page (20x budgets ended at 3–4x).
        """
        pages = self.store.pages(session_id)
        if not pages:
            return None
        last = pages[-1]
        if last.creation_mode is not self.creation_mode:
            return None
        lines = self.store.page_blobs(last.id).layout
        if lines and lines[-1].y1 / last.creation_canvas >= MIN_FILL:
            return None
        if last.mode is not self.creation_mode and self._archived(session_id, last) is None:
            return None  # nothing to typeset it from: it stays as it was read
        self.store.unpage(last.id)
        return last.id

    def _archived(self, session_id: str, page: StoredPage) -> list[TurnText] | None:
        """What the page was typeset from (its spans of its turns), while the archive holds
        every turn on it; None once any of them was dropped."""
        by_id = {t.id: t for t in self.store.turns(session_id, ids=[s.turn_id for s in page.spans])}
        texts = []
        for span in page.spans:
            turn = by_id.get(span.turn_id)
            if turn is None or turn.content is None:
                return None
            texts.append(TurnText(turn.id, turn.role, turn.content[span.start : span.end], turn.name))
        return texts

    def _retypeset(self, page: StoredPage, texts: list[TurnText]) -> RenderedPage | None:
        """The page typeset again from its source at its creation settings, or None where the
        result is not the page it was (a layout that moved would misplace every line box)."""
        options = calibration.render_options(self._backend().name, page.creation_mode)
        if (options.canvas, options.font_px) != (page.creation_canvas, page.font_px):
            options = replace(options, canvas=page.creation_canvas, font_px=page.font_px)
        rendered = paginate(texts, options)
        stored = self.store.page_blobs(page.id).layout
        if len(rendered) != 1 or [(x.y0, x.y1, x.text) for x in rendered[0].lines] != [
            (x.y0, x.y1, x.text) for x in stored
        ]:
            log.warning("page %s does not typeset as it was; it is not rehearsed", page.id)
            return None
        return rendered[0]

    def _page_contents(
        self, page: PageLayout, resume: dict[int, int], by_id: dict[int, StoredTurn]
    ) -> tuple[list[Span], int, int, list[VerbatimItem]]:
        """(spans in turn offsets, text tokens, characters, verbatim strings) of a page."""
        spans = [
            Span(s.turn_id, s.start + resume.get(s.turn_id, 0), s.end + resume.get(s.turn_id, 0))
            for s in page.spans
        ]
        text_tokens = chars = 0
        verbatim: list[VerbatimItem] = []
        for s in spans:
            piece = (by_id[s.turn_id].content or "")[s.start : s.end]
            text_tokens += count_tokens(piece, self.encoding)
            chars += len(piece)
            verbatim += [
                VerbatimItem(v.kind, v.value, v.turn_id, v.offset + s.start)
                for v in extract(piece, s.turn_id)
            ]
        return spans, text_tokens, chars, verbatim

    # -- aging -----------------------------------------------------------------------------

    def plan(
        self, session_id: str, policy: AgingPolicy, *, rehearsing: tuple[int, Mode] | None = None
    ) -> AgingPlan:
        """The policy's plan for the session's pages, priced as `context()` prices them.

        `rehearsing` (page id, sharper mode) plans as if that page were already sharpened and
        used just now: what rehearsing it would make the policy do.
        """
        pricing = self._pricing()
        totals, costs = page_costs(self.store, session_id, pricing)
        states = []
        for c in costs:
            page = c.page
            mode, recalled = page.mode, page.rehearsed_seq
            if rehearsing is not None and rehearsing[0] == page.id:
                mode, recalled = rehearsing[1], totals.last_seq
            image = pricing.image(mode)
            states.append(
                PageState(
                    page.id,
                    mode,
                    image,
                    totals.last_seq - page.last_turn_seq,
                    page.last_turn_at,
                    overhead=c.image - pricing.image(page.mode),
                    as_text=c.as_text,
                    salience=self.salience(page) if policy.needs_salience else 0.0,
                    turns_since_recall=None if recalled is None else totals.last_seq - recalled,
                )
            )
        return policy.plan(states, totals.unpaged_tokens, datetime.now(UTC), cost=pricing.image)

    def salience(self, page: StoredPage) -> float:
        """The page's salience (`optimem.aging.salience`), from its source text while the archive
        holds it, else from its decoded text; computed once per page."""
        key = (page.id, page.created_at)
        if key not in self._salience:
            if len(self._salience) >= SALIENCE_CACHE:
                self._salience.clear()  # a cheap bound for long-running services
            turns = {t.id: t for t in self.store.turns(page.session_id, ids=[s.turn_id for s in page.spans])}
            pieces = [turns.get(s.turn_id) for s in page.spans]
            if all(t is not None and t.content is not None for t in pieces):
                text: str | None = "\n".join(
                    (t.content or "")[s.start : s.end] for t, s in zip(pieces, page.spans, strict=True) if t
                )
            else:
                text = self.store.indexed_text([page.id]).get(page.id)
            self._salience[key] = salience(text, self.store.verbatim(page.id), page.chars)
        return self._salience[key]

    def age(self, session_id: str, plan: AgingPlan) -> list[tuple[int, Mode, Mode]]:
        """Resize the pages the plan moves down the ladder (never up: forgetting is one way)."""
        backend = self._backend()
        aged = []
        for page in self.store.pages(session_id):
            target = plan.targets.get(page.id)
            if target is None or target.rank <= page.mode.rank:
                continue
            blobs = self.store.page_blobs(page.id)
            image = resize_to(Image.open(io.BytesIO(blobs.png)), target.canvas)
            rep, made_by = self._represent(backend, page, image, target, blobs.layout)
            self.store.set_page_mode(page.id, target, png_bytes(image), rep, made_by)
            aged.append((page.id, page.mode, target))
        return aged

    @staticmethod
    def _represent(
        backend: Backend, page: StoredPage, image: Image.Image, mode: Mode, lines: list[LineBox]
    ) -> tuple[bytes | None, str | None]:
        """The backend's stored representation of the page image at `mode`, and who made it."""
        if not backend.capabilities.stores_representation:
            return None, None
        factor = mode.canvas / page.creation_canvas
        rep = backend.encode(
            PageInput(
                image, mode, tuple(x.scaled(factor) for x in lines), page.font_px * factor, page.has_cjk
            )
        )
        return rep, backend.fingerprint()

    # -- rehearsal -------------------------------------------------------------------------

    def rehearse(
        self, session_id: str, page_id: int, policy: AgingPolicy
    ) -> tuple[Mode, list[tuple[int, Mode, Mode]]] | None:
        """Rehearse a recalled page: it counts as used now, and it is sharpened one rung
        (never above its creation mode) where the budget has room, after which the policy
        re-plans. Returns (its new mode, pages the plan aged), or None where it was not
        sharpened.

        The page is typeset again from the archive at its creation settings (as a reopened
        last page is) and resized to the rung above its mode; it keeps its id. It is left
        entirely as it is where the archive no longer holds its turns (it can only be read as
        it is). It is not sharpened, only counted as used, where it is at its creation mode
        or where the policy would age it straight back (the budget has no room for it).
        """
        page = self.store.page(session_id, page_id)
        texts = self._archived(session_id, page)
        if texts is None:
            return None
        now = self.store.turn_totals(session_id).last_seq
        target = page.mode.sharper()
        rendered = None
        if target is not None and target.rank >= page.creation_mode.rank:
            plan = self.plan(session_id, policy, rehearsing=(page.id, target))
            if page.id not in plan.targets:  # else the budget has no room for it
                rendered = self._retypeset(page, texts)
        if rendered is None or target is None:
            self._used(page, now)
            return None
        image = resize_to(rendered.image, target.canvas)
        rep, made_by = self._represent(self._backend(), page, image, target, list(rendered.lines))
        self.store.rehearse_page(page.id, target, png_bytes(image), rep, made_by, now)
        return target, self.age(session_id, plan)

    def _used(self, page: StoredPage, seq: int) -> None:
        """Note that a page was rehearsed at turn `seq` without changing its image."""
        blobs = self.store.page_blobs(page.id)
        self.store.rehearse_page(
            page.id, page.mode, blobs.png, blobs.representation, blobs.representation_backend, seq
        )
