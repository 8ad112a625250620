"""What the model is shown and what it costs: `Context` within a budget, and `Stats`.

Both price pages through `paging.page_costs`, the same numbers compress's budget check and the
policy use, so `context(budget_tokens=stats().context_tokens)` never omits anything.
"""

from __future__ import annotations

from collections.abc import Callable

from .aging.pricing import Pricing
from .errors import InputError
from .modes import Mode
from .pages.paging import page_costs
from .records import Context, ContextItem, ModeStats, Page, Stats, Turn
from .store import Store, StoredPage


def build_context(
    store: Store,
    session_id: str,
    pricing: Pricing,
    budget_tokens: int,
    public_page: Callable[[StoredPage], Page],
    public_turn: Callable,
) -> Context:
    """Recent turns as text (newest kept first), then pages newest first, within the budget.

    Nothing is dropped silently: what does not fit is listed in `omitted_*`.
    """
    if isinstance(budget_tokens, bool) or not isinstance(budget_tokens, int) or budget_tokens <= 0:
        raise InputError(f"budget_tokens must be a positive integer, got {budget_tokens!r}")
    _, costs = page_costs(store, session_id, pricing)
    unpaged = store.turns(session_id, paged=False)
    left = budget_tokens
    texts: list[ContextItem] = []
    omitted_turns: list[int] = []
    for t in reversed(unpaged):
        if t.text_tokens <= left and not omitted_turns:
            turn: Turn = public_turn(t)
            texts.append(ContextItem("text", t.text_tokens, turn=turn, presented="text"))
            left -= t.text_tokens
        else:
            omitted_turns.append(t.id)
    pages_in: list[ContextItem] = []
    omitted_pages: list[int] = []
    for c in reversed(costs):
        if c.tokens <= left and not omitted_pages:
            page = public_page(c.page)
            if c.presented == "text":
                pages_in.append(ContextItem("page", c.tokens, page=page, presented="text", text=c.text))
            else:
                png = store.page_blobs(c.page.id).png
                pages_in.append(ContextItem("page", c.tokens, page=page, png=png))
            left -= c.tokens
        else:
            omitted_pages.append(c.page.id)
    items = list(reversed(pages_in)) + list(reversed(texts))
    return Context(items, budget_tokens, sorted(omitted_turns), sorted(omitted_pages), pricing.consumer)


def build_stats(store: Store, session_id: str, pricing: Pricing) -> Stats:
    """Token accounting of a session: all turns as text against what the model sees."""
    totals, costs = page_costs(store, session_id, pricing)
    per_mode: dict[Mode, ModeStats] = {}
    for mode in Mode:
        ps = [c.page for c in costs if c.page.mode is mode]
        if ps:
            per_mode[mode] = ModeStats(
                len(ps), sum(p.text_tokens for p in ps), sum(pricing.image(p.mode) for p in ps)
            )
    return Stats(
        turns=totals.count,
        text_tokens=totals.text_tokens,
        unpaged_tokens=totals.unpaged_tokens,
        paged_text_tokens=sum(c.page.text_tokens for c in costs),
        positions=sum(pricing.image(c.page.mode) for c in costs),
        per_mode=per_mode,
        page_tokens=sum(c.tokens for c in costs),
        consumer=pricing.consumer,
    )
