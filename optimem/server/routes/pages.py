"""Pages of a session: the list, one page, its image at the current mode."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import Response

from ..deps import ExistingSession
from ..errors import responses
from ..schemas import MAX_ID, PageOut, PagesOut
from ._common import AUTHED, public_id

router = APIRouter(
    prefix="/v1/sessions/{session:session}/pages", tags=["pages"], responses=responses(*AUTHED, 404)
)

PageId = Annotated[int, Path(ge=1, le=MAX_ID, description="Page id.")]


@router.get("", response_model=PagesOut, summary="Every page of the session, oldest first")
async def list_pages(session: ExistingSession) -> PagesOut:
    pages = await session.apages()
    return PagesOut(session=public_id(session), pages=[PageOut.model_validate(p.to_dict()) for p in pages])


@router.get(
    "/{page_id}.png",
    response_class=Response,
    summary="The page image at its current mode",
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "PNG",
        }
    },
)
async def page_png(session: ExistingSession, page_id: PageId) -> Response:
    png = await session.apage_png(page_id)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


@router.get("/{page_id}", response_model=PageOut, summary="One page")
async def page(session: ExistingSession, page_id: PageId) -> PageOut:
    found = await session.apage(page_id)
    return PageOut.model_validate(found.to_dict())
