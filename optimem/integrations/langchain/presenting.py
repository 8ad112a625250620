"""Show a session's memory to a chat model as LangChain messages: images, text or an index."""

from __future__ import annotations

import logging
from typing import Literal

from langchain_core.messages import AnyMessage, HumanMessage

from ...aging.pricing import page_caption
from ...errors import BackendError
from ...memory import Session
from ...records import UNVERIFIED_NOTE, Context, Page, Turn
from .convert import dict_to_message, mark, pair_tool_calls
from .counting import page_block_id
from .sessions import archived_text

log = logging.getLogger("optimem.langchain")

Present = Literal["images", "text", "tool"]
OnRecallError = Literal["raise", "log"]

PRESENTS: tuple[str, ...] = ("images", "text", "tool")

HEADER = {
    "images": "Earlier conversation, kept as page images (oldest first).",
    "text": "Earlier conversation, read back from memory pages (oldest first; OCR may blur words).",
    "tool": "Earlier conversation is archived in memory pages; read one with the recall_memory "
    "tool (page_id) or search them (query). Pages:",
}
#: Said after the header only where the model really has the recall_memory tool.
TOOL_HINT = "The recall_memory tool reads a page back as text."


def header(present: Present, with_tool: bool = True) -> str:
    """The line that introduces the memory; it names the recall tool only when the model has it."""
    if present == "images" and with_tool:
        return f"{HEADER[present]} {TOOL_HINT}"
    return HEADER[present]


def omitted_note(pages: int, turns: int, with_tool: bool = True) -> str:
    note = f"({pages} older memory pages and {turns} older turns did not fit in context"
    return note + ("; recall_memory(query=...) searches them.)" if with_tool else ".)")


def memory_messages(
    session: Session,
    budget: int,
    *,
    present: Present = "images",
    consumer: str | None = None,
    on_recall_error: OnRecallError = "raise",
    with_tool: bool = True,
) -> tuple[list[AnyMessage], dict]:
    """Messages that show `session`'s memory within `budget` tokens, oldest first.

    `with_tool` says whether the model has the recall_memory tool: without it, nothing shown
    mentions the tool. Returns the messages (tagged as optimem's own) and a small summary of what was shown
    (page ids, tokens, omitted counts) for the graph state.
    """
    from ...aging.pricing import Pricing

    pricing = Pricing(session.memory.backend, consumer, session.memory.encoding)
    if present == "tool" and not with_tool:
        raise ValueError("present='tool' shows only an index of pages: it needs the recall_memory tool")
    head = header(present, with_tool)
    left = budget - pricing.text(head) - pricing.text(omitted_note(99, 99, with_tool))
    if left <= 0:
        return [], {"pages_shown": [], "tokens": 0}
    if present == "images":
        ctx = session.context(budget_tokens=left, consumer=consumer)
        messages, shown = _from_context(ctx, head)
        omitted = (len(ctx.omitted_page_ids), len(ctx.omitted_turn_ids))
        tokens = ctx.tokens
    else:
        messages, shown, omitted, tokens = _as_text(session, left, present, pricing, on_recall_error, head)
    note = omitted_note(*omitted, with_tool=with_tool)
    if any(omitted):
        messages.insert(1 if messages else 0, mark(HumanMessage(content=note)))
    tokens += pricing.text(head) + (pricing.text(note) if any(omitted) else 0)
    info = {"pages_shown": shown, "tokens": tokens, "omitted_pages": omitted[0], "omitted_turns": omitted[1]}
    return messages, info


def _from_context(ctx: Context, header: str) -> tuple[list[AnyMessage], list[int]]:
    """Pages in one user message of caption + image blocks; recent turns as their messages."""
    blocks: list[str | dict] = [{"type": "text", "text": header}]
    shown: list[int] = []
    turns: list[AnyMessage] = []
    for item, msg in zip(ctx.items, ctx.to_messages(), strict=True):
        if item.kind == "page":
            assert item.page is not None
            shown.append(item.page.id)
            content = msg["content"]
            if isinstance(content, str):  # the core showed the page as its (cheaper) text
                content = [{"type": "text", "text": content}]
            for block in content:
                if block.get("type") == "image":
                    block = {**block, "id": page_block_id(item.page.id, item.page.mode)}
                blocks.append(block)
        else:
            turns.append(mark(dict_to_message(msg)))
    out: list[AnyMessage] = [mark(HumanMessage(content=blocks))] if shown else []
    return out + pair_tool_calls(turns), shown


def _as_text(
    session: Session, left: int, present: Present, pricing, on_recall_error: OnRecallError, head: str
) -> tuple[list[AnyMessage], list[int], tuple[int, int], int]:
    """Newest first within `left`: unpaged turns as text, then pages as recalled text or
    as one index line each."""
    unpaged = [t for t in session.turns() if not t.paged]
    turns_in: list[Turn] = []
    omitted_turns = 0
    for t in reversed(unpaged):
        cost = t.text_tokens
        if cost <= left and not omitted_turns:
            turns_in.append(t)
            left -= cost
        else:
            omitted_turns += 1
    pages_in: list[tuple[Page, str]] = []
    omitted_pages = 0
    used = 0
    for page in reversed(session.pages()):
        text = _page_text(session, page, present, on_recall_error)
        cost = pricing.text(text)
        if cost <= left and not omitted_pages:
            pages_in.append((page, text))
            left -= cost
            used += cost
        else:
            omitted_pages += 1
    used += sum(t.text_tokens for t in turns_in)
    pages_in.reverse()
    out: list[AnyMessage] = []
    if pages_in:
        body = "\n\n".join([head, *(text for _, text in pages_in)])
        out.append(mark(HumanMessage(content=body)))
    turns = [dict_to_message(_turn_dict(t)) for t in reversed(turns_in)]
    out += [mark(m) for m in pair_tool_calls(turns)]
    return out, [p.id for p, _ in pages_in], (omitted_pages, omitted_turns), used


def _page_text(session: Session, page: Page, present: Present, on_recall_error: OnRecallError) -> str:
    first, last = page.turn_ids[0], page.turn_ids[-1]
    if present == "tool":
        return f"- page {page.id}: turns {first}-{last}, {page.mode.value}"
    try:
        recall = session.recall_page(page.id)
    except BackendError as exc:
        fallback = archived_text(session, page) if on_recall_error == "log" else None
        if fallback is None:
            raise
        log.warning("page %s could not be read back by OCR; showing its archived text: %s", page.id, exc)
        return f"{page_caption(page)} (from the archive)\n{fallback}"
    note = f"\n{UNVERIFIED_NOTE}" if recall.unverified_lines else ""
    return f"{page_caption(page)}{note}\n{recall.marked_text}"


def _turn_dict(t: Turn) -> dict:
    d: dict = {"role": t.role, "content": t.content or "", "name": t.name}
    if t.metadata.get("tool_calls"):
        d["tool_calls"] = t.metadata["tool_calls"]
    if t.metadata.get("tool_call_id"):
        d["tool_call_id"] = t.metadata["tool_call_id"]
    return d
