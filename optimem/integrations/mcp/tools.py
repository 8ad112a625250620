"""The memory's tools, named and described for a model: remember, compress, recall, search,
context, stats, sessions. Each calls the library's async API and answers compact JSON (context:
text and image content); limits and errors are the REST service's.

No `from __future__ import annotations` here: the SDK reads each tool's signature to build its
input schema, and the tools are closures whose annotations must be objects, not strings.
"""

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations
from pydantic import Field

from optimem.server.errors import ApiError
from optimem.server.schemas import TurnIn

from ...aging.pricing import CONSUMERS
from .content import Block, compact, context_blocks, hits, recalled, span
from .errors import guarded
from .schema import slim

if TYPE_CHECKING:
    from .config import McpConfig
    from .tenancy import Tenancy

    ConsumerName = str
else:  # the names optimem.aging.pricing knows, as an enum in the tool's input schema
    ConsumerName = Literal[tuple(CONSUMERS)]

MAX_BUDGET = 10_000_000
Session = Annotated[str, Field(description="Memory session id: one per conversation.")]
Consumer = Annotated[
    ConsumerName | None,
    Field(
        description="Price page images as this model family counts image tokens (default: the server's rule)."
    ),
]
READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)


def build(tenancy: "Tenancy", config: "McpConfig") -> list[Tool]:
    """Every tool, over `tenancy`'s sessions; `config` gives the default session, budget and limits."""
    limits = config.settings
    guard = guarded(lambda: tenancy.tenant().prefix)

    @guard
    async def remember(
        turns: Annotated[list[TurnIn], Field(min_length=1, description="Chat messages, oldest first.")],
        session: Session = config.session,
        compress: Annotated[
            bool, Field(description="Then page old turns and age pages to keep the memory in budget.")
        ] = True,
    ) -> str:
        """Store chat turns in memory, all or nothing. Give each turn an external_id (your message
        id): a turn whose external_id is already stored is not added again, so retrying is safe.
        Returns the turn ids and, with compress, what was paged."""
        if len(turns) > limits.max_turns_per_request:
            raise ApiError(
                413,
                "too_many_turns",
                f"{len(turns)} turns in one request; the limit is {limits.max_turns_per_request}",
            )
        s = tenancy.sessions().session(session)
        external = [t.external_id for t in turns if t.external_id is not None]
        known = await asyncio.to_thread(s.lookup_external_ids, external) if external else {}
        ids = await s.aadd_turns([t.model_dump(exclude_none=True) for t in turns], skip_existing=True)
        out: dict = {"session": session, "turn_ids": ids, "added": len(ids) - len(known)}
        if known:
            out["already_stored"] = len(known)
        if compress:
            result = await s.acompress()
            out |= {
                "pages_created": result.created,
                "pages_aged": len(result.aged),
                "context_tokens": result.tokens_after,
            }
        return compact(out)

    @guard
    async def compress(
        session: Session = config.session,
        flush: Annotated[
            bool, Field(description="Also page the newest turns and a partly filled page.")
        ] = False,
    ) -> str:
        """Page old turns into images and age old pages down the resolution ladder, as the memory's
        policy says (usually a token budget). Returns pages created and aged, and tokens before/after."""
        s = await tenancy.sessions().existing(session)
        result = await s.acompress(flush=flush)
        return compact(
            {
                "session": session,
                "created": result.created,
                "aged": [{"page_id": p, "from_mode": a.value, "to_mode": b.value} for p, a, b in result.aged],
                "tokens_before": result.tokens_before,
                "tokens_after": result.tokens_after,
                "over_budget": result.over_budget,
            }
        )

    @guard
    async def recall(
        page_ids: Annotated[
            list[Annotated[int, Field(ge=1)]],
            Field(min_length=1, description=f"Page ids, at most {limits.max_pages_per_recall}."),
        ],
        session: Session = config.session,
        split_turns: Annotated[
            bool, Field(description="Give the text per turn id (turn_texts) instead of one page text.")
        ] = False,
    ) -> str:
        """Read memory pages back as text (OCR; identifiers, numbers and URLs restored exactly).
        Use it for details a page image is too small or blurred to show. lines_exact of
        lines_checked lines passed their stored word check."""
        if len(page_ids) > limits.max_pages_per_recall:
            raise ApiError(
                422,
                "too_many_pages",
                f"{len(page_ids)} pages in one recall; the limit is {limits.max_pages_per_recall}",
            )
        s = await tenancy.sessions().existing(session)
        out = []
        for page_id in page_ids:
            read = await s.arecall_page(page_id)
            page = await asyncio.to_thread(s.page, page_id)
            out.append(recalled(page, read, split_turns=split_turns))
        return compact({"session": session, "pages": out})

    @guard
    async def recall_turns(
        turn_ids: Annotated[
            list[Annotated[int, Field(ge=1)]],
            Field(min_length=1, max_length=200, description="Turn ids (a page's caption names its turns)."),
        ],
        session: Session = config.session,
    ) -> str:
        """Read turns back whole and as typed, stitched over the pages that hold them. verified
        is false where a line of the turn did not pass its stored check: distrust it."""
        s = await tenancy.sessions().existing(session)
        turns = await s.arecall_turns(turn_ids)
        return compact({"session": session, "turns": [t.to_dict() for t in turns]})

    @guard
    async def search(
        query: Annotated[str, Field(min_length=1, max_length=2000, description="Words to look for.")],
        session: Session = config.session,
        limit: Annotated[int, Field(ge=1, description=f"Hits, at most {limits.max_recall_hits}.")] = 5,
        wait: Annotated[
            bool, Field(description="Read pages not read yet first (slow: OCR) instead of skipping them.")
        ] = False,
    ) -> str:
        """Search the memory's pages by words. Returns the best pages with their turn range, a
        snippet, and how many lines were verified; then recall a page_id for its full text.
        unsearched counts pages not read yet (queued now)."""
        if limit > limits.max_recall_hits:
            raise ApiError(
                422, "too_many_hits", f"limit {limit} is over the {limits.max_recall_hits} allowed"
            )
        s = await tenancy.sessions().existing(session)
        found = await s.asearch(query, limit=limit, wait=wait)
        reads = {h.page_id: await s.acached_recall(h.page_id) for h in found}
        return compact({"session": session} | hits(found, reads))

    @guard
    async def context(
        session: Session = config.session,
        budget_tokens: Annotated[
            int, Field(ge=1, le=MAX_BUDGET, description="Tokens the context may cost.")
        ] = config.budget_tokens,
        consumer: Consumer = None,
    ) -> list[Block]:
        """The conversation as memory holds it, within a token budget: older pages as images
        (captioned with their page and turn ids), then the recent turns as text. Whatever does not
        fit is listed in the header's omitted_* ids."""
        s = await tenancy.sessions().existing(session)
        ctx = await s.acontext(budget_tokens, consumer=consumer)
        return context_blocks(session, ctx)

    @guard
    async def stats(session: Session = config.session, consumer: Consumer = None) -> str:
        """Token accounting of a session: text tokens of every turn against what a model sees
        (recent turns as text, pages as images), per page mode."""
        s = await tenancy.sessions().existing(session)
        st = await s.astats(consumer=consumer)
        pages = await s.apages()
        data = st.to_dict() | {
            "session": session,
            "pages": [
                {"page_id": p.id, "number": p.number, "turns": span(p.turn_ids), "mode": p.mode.value}
                for p in pages
            ],
        }
        return compact(data)

    @guard
    async def sessions() -> str:
        """List the memory sessions you can use (one per conversation), to pass as session to the other tools."""
        return compact({"sessions": await asyncio.to_thread(tenancy.sessions().names)})

    return [
        tool(remember, ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=True)),
        tool(compress, WRITES),
        tool(recall, READ_ONLY),
        tool(recall_turns, READ_ONLY),
        tool(search, READ_ONLY),
        tool(context, READ_ONLY),
        tool(stats, READ_ONLY),
        tool(sessions, READ_ONLY),
    ]


def tool(fn: Callable[..., Any], hints: ToolAnnotations) -> Tool:
    """`fn` as an MCP tool: its docstring on one line as the description, a slim input schema."""
    made = Tool.from_function(
        fn, description=" ".join((fn.__doc__ or "").split()), annotations=hints, structured_output=False
    )
    made.parameters = slim(made.parameters)
    return made
