"""POST /v1/compress: page old turns and age pages by the memory's policy."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import SessionsDep
from ..errors import responses
from ..schemas import Aged, CompressIn, CompressOut
from ._common import AUTHED

router = APIRouter(prefix="/v1", tags=["compress"], responses=responses(*AUTHED, 404))


@router.post(
    "/compress",
    response_model=CompressOut,
    summary="Page old turns and age pages (one transaction each)",
    responses=responses(415),
)
async def compress(request: Request, body: CompressIn, sessions: SessionsDep) -> CompressOut:
    session = await sessions.existing(body.session)
    metrics = request.app.state.metrics
    with metrics.timed(metrics.compress):
        result = await session.acompress(flush=body.flush)
    return CompressOut(
        session=body.session,
        created=list(result.created),
        aged=[Aged(page_id=pid, from_mode=old.value, to_mode=new.value) for pid, old, new in result.aged],
        tokens_before=result.tokens_before,
        tokens_after=result.tokens_after,
        over_budget=result.over_budget,
    )
