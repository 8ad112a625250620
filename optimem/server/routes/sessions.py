"""The caller's sessions: list, delete, stats and context."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Query

from optimem.aging.pricing import CONSUMERS

from ..deps import ExistingSession, SessionsDep
from ..errors import responses
from ..schemas import ContextOut, DeletedOut, SessionsOut, StatsOut
from ._common import AUTHED, public_id

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=responses(*AUTHED))

MAX_BUDGET = 10_000_000
if TYPE_CHECKING:
    ConsumerName = str
else:  # the names optimem.aging.pricing knows, as an enum in the OpenAPI document
    ConsumerName = Literal[tuple(CONSUMERS)]
Consumer = Annotated[
    ConsumerName | None,
    Query(
        description="Price pages as this model family sees them (default: the OCR backend's own positions).",
        examples=["anthropic"],
    ),
]


@router.get("", response_model=SessionsOut, summary="The caller's sessions")
async def list_sessions(sessions: SessionsDep) -> SessionsOut:
    return SessionsOut(sessions=await asyncio.to_thread(sessions.names))


@router.get(
    "/{session:session}/stats",
    response_model=StatsOut,
    summary="Token accounting: text tokens against what the model sees, per mode",
    responses=responses(404),
)
async def stats(session: ExistingSession, consumer: Consumer = None) -> StatsOut:
    st = await session.astats(consumer=consumer)
    data = st.to_dict()
    for name in ("context_tokens", "compression", "savings"):
        data.setdefault(name, getattr(st, name))
    return StatsOut.model_validate({**data, "session": public_id(session), "consumer": consumer})


@router.get(
    "/{session:session}/context",
    response_model=ContextOut,
    summary="What a model should see within a budget, as chat messages with image blocks",
    responses=responses(404),
)
async def context(
    session: ExistingSession,
    budget_tokens: Annotated[
        int, Query(ge=1, le=MAX_BUDGET, description="Tokens the context may cost.")
    ] = 4000,
    consumer: Consumer = None,
) -> ContextOut:
    ctx = await session.acontext(budget_tokens, consumer=consumer)
    data = ctx.to_dict()
    data.setdefault("tokens", ctx.tokens)
    return ContextOut.model_validate({**data, "session": public_id(session), "consumer": consumer})


@router.delete(
    "/{session:session}",
    response_model=DeletedOut,
    summary="Delete a session: turns, pages, archive and caches",
    responses=responses(404),
)
async def delete_session(session: ExistingSession) -> DeletedOut:
    deleted = (await session.adelete()).to_dict()
    counts = {k: v for k, v in deleted.items() if isinstance(v, int) and not isinstance(v, bool)}
    return DeletedOut(session=public_id(session), deleted=counts)
