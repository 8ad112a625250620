"""What the tools answer with: compact JSON text, and a `Context` as MCP text and image content.

JSON keeps to the REST service's field names, without indentation (the model pays for every
token of it). A context becomes one header, then per page its caption and its PNG as MCP image
content (or its text where the library chose text as cheaper), then the recent turns as text.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mcp_types import ImageContent, TextContent

from ...aging.pricing import page_caption
from ...layout import speaker
from ...records import UNVERIFIED_NOTE, Context, Hits, Page, Recall

Block = TextContent | ImageContent


def compact(data: Any) -> str:
    """JSON without indentation, non-ASCII kept as it is (fewer tokens than escapes)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def span(turn_ids: tuple[int, ...] | list[int]) -> list[int]:
    """A page's turns as [first, last] (pages hold consecutive turns)."""
    return [turn_ids[0], turn_ids[-1]] if turn_ids else []


def recalled(page: Page, recall: Recall, *, split_turns: bool) -> dict[str, Any]:
    """One page read back: its text (or text per turn id), how it was read, what was checked."""
    out: dict[str, Any] = {"page_id": recall.page_id, "turns": span(page.turn_ids)}
    if split_turns and recall.turns:
        out["turn_texts"] = {str(tid): text for tid, text in recall.turns.items()}
        doubtful = [tid for tid, ok in recall.turns_verified.items() if ok is False]
        if doubtful:
            out["unverified_turns"] = doubtful
    else:
        out["text"] = recall.marked_text
        if recall.unverified_lines:
            out["unverified"] = UNVERIFIED_NOTE
    out |= {
        "mode": recall.mode.value,
        "lines_exact": recall.lines_exact,
        "lines_checked": recall.lines_checked,
        "backend": recall.backend,
        "cached": recall.cached,
    }
    if recall.note:
        out["note"] = recall.note
    return out


def hits(found: Hits, reads: dict[int, Recall | None]) -> dict[str, Any]:
    """Search hits with their turn ranges and, for pages already read, how many lines were verified."""
    out = []
    for h in found:
        item: dict[str, Any] = {
            "page_id": h.page_id,
            "turns": span(h.turn_ids),
            "score": h.score,
            "mode": h.mode.value,
            "snippet": h.snippet,
        }
        read = reads.get(h.page_id)
        if read is not None:
            item |= {"lines_exact": read.lines_exact, "lines_checked": read.lines_checked}
        out.append(item)
    return {"hits": out, "unsearched": found.unsearched}


def context_blocks(session: str, ctx: Context) -> list[Block]:
    """The context as MCP content: a header, each page (caption + image, or text), recent turns."""
    header = {
        "session": session,
        "tokens": ctx.tokens,
        "budget_tokens": ctx.budget_tokens,
        "consumer": ctx.consumer,
        "pages": sum(1 for i in ctx.items if i.kind == "page"),
        "recent_turns": sum(1 for i in ctx.items if i.kind == "text"),
        "omitted_page_ids": ctx.omitted_page_ids,
        "omitted_turn_ids": ctx.omitted_turn_ids,
    }
    blocks: list[Block] = [TextContent(type="text", text=compact(header))]
    for item in ctx.items:
        if item.kind == "page":
            assert item.page is not None
            caption = page_caption(item.page)
            if item.presented == "text":
                blocks.append(TextContent(type="text", text=f"{caption}\n{item.text or ''}"))
                continue
            assert item.png is not None
            blocks.append(TextContent(type="text", text=caption))
            data = base64.b64encode(item.png).decode("ascii")
            blocks.append(ImageContent(type="image", data=data, mime_type="image/png"))
        else:
            assert item.turn is not None
            label = speaker(item.turn.role, item.turn.name)
            blocks.append(
                TextContent(type="text", text=f"[turn {item.turn.id}] {label}: {item.turn.content or ''}")
            )
    return blocks
