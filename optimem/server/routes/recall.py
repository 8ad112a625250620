"""POST /v1/recall: read pages back by id, or search them by query."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..deps import SessionsDep
from ..errors import ApiError, responses
from ..schemas import (
    Hit,
    RecallByIds,
    RecallByQuery,
    RecalledPage,
    RecalledTurnOut,
    RecallOut,
    RecallTurnsIn,
    RecallTurnsOut,
)
from ._common import AUTHED

router = APIRouter(prefix="/v1", tags=["recall"], responses=responses(*AUTHED, 404, 502, 503))


@router.post(
    "/recall",
    response_model=RecallOut,
    summary="Read pages back (page_ids) or search them (query)",
    responses=responses(415),
)
async def recall(request: Request, body: RecallByIds | RecallByQuery, sessions: SessionsDep) -> RecallOut:
    settings = request.app.state.settings
    session = await sessions.existing(body.session)
    metrics = request.app.state.metrics
    if isinstance(body, RecallByIds):
        if len(body.page_ids) > settings.max_pages_per_recall:
            raise ApiError(
                422,
                "too_many_pages",
                f"{len(body.page_ids)} pages in one recall; the limit is {settings.max_pages_per_recall}",
            )
        pages = []
        with metrics.timed(metrics.recall, kind="page"):
            for page_id in body.page_ids:
                pages.append(RecalledPage.model_validate((await session.arecall_page(page_id)).to_dict()))
        return RecallOut(session=body.session, pages=pages)
    if body.limit > settings.max_recall_hits:
        raise ApiError(
            422, "too_many_hits", f"limit {body.limit} is over the {settings.max_recall_hits} allowed"
        )
    with metrics.timed(metrics.recall, kind="query"):
        hits = await session.asearch(body.query, limit=body.limit, wait=body.wait)
    found = hits.to_dict()
    return RecallOut(
        session=body.session,
        hits=[Hit.model_validate(h) for h in found["hits"]],
        unsearched=found["unsearched"],
    )


@router.post(
    "/recall/turns",
    response_model=RecallTurnsOut,
    summary="Read turns back whole, stitched over the pages that hold them",
    responses=responses(415, 422),
)
async def recall_turns(request: Request, body: RecallTurnsIn, sessions: SessionsDep) -> RecallTurnsOut:
    session = await sessions.existing(body.session)
    metrics = request.app.state.metrics
    with metrics.timed(metrics.recall, kind="turns"):
        turns = await session.arecall_turns(body.turn_ids)
    return RecallTurnsOut(
        session=body.session, turns=[RecalledTurnOut.model_validate(t.to_dict()) for t in turns]
    )
