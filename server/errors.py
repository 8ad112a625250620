"""Every error the service answers, as JSON ``{"error": {"type", "message"}}``, mapped in one place.

The library's exception tree (`optimem.errors`) maps to status codes in `LIBRARY_STATUS`; the
service's own refusals (auth, limits) are `ApiError`s. Messages never name another tenant:
the caller's own tenant prefix is taken out of library messages before they are sent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from optimem.errors import (
    BackendError,
    BackendUnavailable,
    DuplicateExternalId,
    InputError,
    OptimemError,
    PageNotFound,
    SchemaError,
    SessionNotFound,
    StoreError,
    UnknownBackend,
)

log = logging.getLogger("optimem.server")

#: Library error → HTTP status; the first class in an error's MRO that is listed wins.
LIBRARY_STATUS: dict[type[OptimemError], int] = {
    SessionNotFound: 404,
    PageNotFound: 404,
    DuplicateExternalId: 409,
    InputError: 422,
    BackendUnavailable: 503,
    UnknownBackend: 500,
    BackendError: 502,
    SchemaError: 500,
    StoreError: 503,
    OptimemError: 500,
}


class ApiError(Exception):
    """A refusal of the service itself: status, a snake_case type and a message."""

    def __init__(self, status: int, type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.headers = headers or {}


def not_found(session: str) -> ApiError:
    """The one answer for a session that is missing or belongs to another tenant."""
    return ApiError(404, "session_not_found", f"no session {session!r}")


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for the error statuses a route can answer."""
    from .schemas import ErrorBody

    what = {
        400: "A body that is not JSON text.",
        401: "Missing, invalid or revoked API key.",
        403: "Refused: metrics are off where the service has keys but no metrics key.",
        404: "No such session or page for this tenant.",
        409: "An external_id given twice or already stored.",
        413: "Request body or batch over its limit.",
        422: "Bad input (the library's or the schema's message).",
        429: "Too many requests for this key; see Retry-After.",
        502: "The OCR decoder failed.",
        503: "Database or OCR backend unavailable.",
    }
    return {code: {"model": ErrorBody, "description": what[code]} for code in statuses}


def error_body(type: str, message: str) -> dict[str, Any]:
    return {"error": {"type": type, "message": message}}


def _json(status: int, type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(type, message), status_code=status, headers=headers)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def error_type(exc: OptimemError) -> str:
    """The `type` a library error is answered with: its class name in snake_case."""
    return _snake(type(exc).__name__)


def without_tenant(message: str, prefix: str | None) -> str:
    """`message` with the caller's own tenant prefix (``"acme/"``) taken out of session ids."""
    return message.replace(prefix, "") if prefix else message


def library_status(exc: OptimemError) -> int:
    for cls in type(exc).__mro__:
        if cls in LIBRARY_STATUS:
            return LIBRARY_STATUS[cls]
    return 500


def _strip_tenant(request: Request, message: str) -> str:
    tenant = getattr(request.state, "tenant", None)
    return without_tenant(message, tenant.prefix if tenant is not None else None)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.type, exc.message, exc.headers)


async def _library_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OptimemError)
    status = library_status(exc)
    if status >= 500:
        log.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
    return _json(status, error_type(exc), _strip_tenant(request, str(exc)))


def validation_message(errors: Sequence[Any]) -> str:
    """A `validation_error`'s message: ``where: what`` for the first five of pydantic's errors."""
    parts = []
    for err in errors[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _json(422, "validation_error", validation_message(exc.errors()))


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "__none__"})
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        return _json(
            405, "method_not_allowed", "method not allowed here", {"Allow": _allowed_methods(request)}
        )
    names = {
        400: "bad_request",
        401: "unauthorized",
        404: "not_found",
        405: "method_not_allowed",
        413: "payload_too_large",
    }
    headers = dict(exc.headers) if exc.headers else None
    return _json(exc.status_code, names.get(exc.status_code, "http_error"), str(exc.detail), headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _json(500, "internal_error", "internal server error (logged on the server)")


def install(app: FastAPI) -> None:
    """Register the handlers of every error family on `app`."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(OptimemError, _library_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
