"""The viewer's routes under /ui: HTML pages, each with a `?format=json` twin, page images, login."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from optimem import OptimemError, __version__

from ..deps import MemoryDep, SessionName
from ..errors import ApiError, library_status, without_tenant
from ..schemas import MAX_ID
from . import chart, views
from .auth import (
    COOKIE,
    COOKIE_MAX_AGE,
    COOKIE_PATH,
    ImageSessions,
    LoginRequired,
    ViewerSessions,
    check_key,
    login_url,
    safe_next,
    same_origin,
)

log = logging.getLogger("optimem.server")
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["num"] = lambda v: f"{v:,}" if isinstance(v, int) else v
templates.env.filters["pct"] = lambda v: "–" if v is None else f"{100 * v:.1f}%"
templates.env.globals["mode_colours"] = chart.MODE_COLOURS
templates.env.globals["version"] = __version__

#: Headers of every HTML page: nothing from elsewhere, no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "private, no-store",
}

PageId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="Page id.")]
Format = Annotated[str, Query(pattern="^(html|json)$", description="`json` for the page's JSON twin.")]


def wants_json(request: Request) -> bool:
    return request.query_params.get("format") == "json"


class ViewerRoute(APIRoute):
    """Errors on viewer pages come back as HTML pages (or the API's JSON for `?format=json`);
    a missing key sends a browser to the login form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired as exc:
                if wants_json(request) or request.url.path.endswith(".png"):
                    raise
                return RedirectResponse(login_url(exc.next_url), status_code=303)
            except (ApiError, OptimemError, RequestValidationError) as exc:
                if wants_json(request) or request.url.path.endswith(".png"):
                    raise
                return error_page(request, exc)

        return route


def error_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        status, message = exc.status, exc.message
    elif isinstance(exc, OptimemError):
        status = library_status(exc)
        tenant = getattr(request.state, "tenant", None)
        message = without_tenant(str(exc), tenant.prefix if tenant else None)
    else:
        status, message = 422, "; ".join(str(e.get("msg", "invalid")) for e in exc.errors()[:3])  # type: ignore[attr-defined]
    if status >= 500:
        log.error("viewer error on %s: %s", request.url.path, message)
    response = render(request, "error.html", {"status": status, "message": message}, status=status)
    if isinstance(exc, ApiError):
        response.headers.update(exc.headers)  # Retry-After of a 429
    return response


def render(request: Request, template: str, data: dict[str, Any], status: int = 200) -> Response:
    """The page's data as JSON (`?format=json`) or rendered by its template."""
    if wants_json(request):
        return JSONResponse(data, status_code=status)
    tenant = getattr(request.state, "tenant", None)
    context = {"data": data, "tenant": tenant.name if tenant else None, "auth": _auth_on(request)}
    return templates.TemplateResponse(
        request, template, context, status_code=status, headers=SECURITY_HEADERS
    )


def _auth_on(request: Request) -> bool:
    return request.app.state.keys is not None


router = APIRouter(prefix="/ui", route_class=ViewerRoute, include_in_schema=False)


@router.get("")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    if not _auth_on(request):  # no keys: one local user who sees everything, nothing to sign in to
        return RedirectResponse(safe_next(next), status_code=303)
    data = {"next": safe_next(next), "error": None}
    return render(request, "login.html", data)


@router.post("/login")
async def login(request: Request) -> Response:
    """Check the key, then keep it in an HttpOnly cookie scoped to /ui (SameSite=Strict)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = safe_next((form.get("next") or [""])[0])
    tenant = check_key(request, key) if key else None
    if tenant is None:
        data = {"next": target, "error": "That key is not valid (or was revoked)."}
        return render(request, "login.html", data, status=401)
    response = RedirectResponse(target, status_code=303)
    if _auth_on(request):
        response.set_cookie(
            COOKIE,
            key,
            max_age=COOKIE_MAX_AGE,
            path=COOKIE_PATH,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


@router.get("/")
async def sessions_page(request: Request, sessions: ViewerSessions, format: Format = "html") -> Response:
    data = await asyncio.to_thread(views.sessions_list, sessions)
    return render(request, "sessions.html", data)


@router.get("/s/{session:session}/search")
async def search_page(
    request: Request,
    session: SessionName,
    sessions: ViewerSessions,
    q: Annotated[str, Query(max_length=500)] = "",
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    format: Format = "html",
) -> Response:
    found = await sessions.existing(session)
    if not q.strip():
        data = {"session": session, "query": q, "hits": [], "unsearched": 0}
    else:
        data = await asyncio.to_thread(views.search, found, q, limit)
    return render(request, "search.html", data)


@router.get("/s/{session:session}/pages/{page_id}.png")
async def page_png(session: SessionName, page_id: PageId, sessions: ImageSessions) -> Response:
    found = await sessions.existing(session)
    png = await found.apage_png(page_id)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/s/{session:session}/pages/{page_id}")
async def page_page(
    request: Request, session: SessionName, page_id: PageId, sessions: ViewerSessions, format: Format = "html"
) -> Response:
    found = await sessions.existing(session)
    data = await asyncio.to_thread(views.page_view, found, page_id)
    return render(request, "page.html", data)


@router.post("/s/{session:session}/pages/{page_id}/read")
async def read_again(
    request: Request,
    session: SessionName,
    page_id: PageId,
    sessions: ViewerSessions,
    format: Format = "html",
) -> Response:
    if not same_origin(request):
        raise ApiError(403, "forbidden", "cross-site form post refused")
    found = await sessions.existing(session)
    fresh = await asyncio.to_thread(views.read_again, found, page_id)
    if wants_json(request):
        return JSONResponse(fresh)
    data = await asyncio.to_thread(views.page_view, found, page_id)
    return render(request, "page.html", data | {"fresh": fresh})


# last, beside the longer viewer paths above that a full id (which may hold "/") could resemble
@router.get("/s/{session:session}")
async def timeline_page(
    request: Request,
    session: SessionName,
    sessions: ViewerSessions,
    memory: MemoryDep,
    format: Format = "html",
) -> Response:
    found = await sessions.existing(session)
    data = await asyncio.to_thread(views.timeline, found, memory)
    if not wants_json(request):
        data = data | {"svg": chart.geometry(data["chart"], data["chart"]["budget"])}
    return render(request, "timeline.html", data)
