"""Turns of a session: add one or a batch (all or nothing), list them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from optimem import Session

from ..deps import ExistingSession, NewOrExistingSession
from ..errors import ApiError, responses
from ..schemas import TurnIn, TurnOut, TurnsAdded, TurnsIn, TurnsOut
from ._common import AUTHED, public_id

router = APIRouter(
    prefix="/v1/sessions/{session:session}/turns", tags=["turns"], responses=responses(*AUTHED)
)


@router.post(
    "",
    response_model=TurnsAdded,
    status_code=201,
    summary="Add one turn or a batch (all or nothing); creates the session",
    responses=responses(409, 415),
)
async def add_turns(request: Request, session: NewOrExistingSession, body: TurnIn | TurnsIn) -> TurnsAdded:
    batch = body.turns if isinstance(body, TurnsIn) else [body]
    limit = request.app.state.settings.max_turns_per_request
    if len(batch) > limit:
        raise ApiError(413, "too_many_turns", f"{len(batch)} turns in one request; the limit is {limit}")
    skip = body.skip_existing if isinstance(body, TurnsIn) else False
    await _check_external_ids(session, [t.external_id for t in batch if t.external_id is not None], skip)
    rows = [t.model_dump(exclude_none=True) for t in batch]
    ids = await session.aadd_turns(rows, skip_existing=skip)
    return TurnsAdded(session=public_id(session), turn_ids=ids)


async def _check_external_ids(session: Session, ids: list[str], skip_existing: bool) -> None:
    """409 for an external id given twice, or already stored (unless skipping stored ones)."""
    repeated = sorted({x for x in ids if ids.count(x) > 1})
    if repeated:
        raise ApiError(
            409, "duplicate_external_id", f"external_id {repeated[0]!r} appears twice in one batch"
        )
    if ids and not skip_existing:
        stored = await session.alookup_external_ids(ids)
        if stored:
            first = next(iter(stored))
            raise ApiError(
                409,
                "duplicate_external_id",
                f"external_id {first!r} is already stored in this session (turn {stored[first]}); "
                "send skip_existing=true to retry safely",
            )


@router.get(
    "", response_model=TurnsOut, summary="The session's turns, oldest first", responses=responses(404)
)
async def list_turns(
    session: ExistingSession,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> TurnsOut:
    turns = await session.aturns()
    window = [TurnOut.model_validate(t.to_dict()) for t in turns[offset : offset + limit]]
    return TurnsOut(session=public_id(session), total=len(turns), turns=window)
