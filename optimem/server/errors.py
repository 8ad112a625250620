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
    TurnNotFound,
    UnknownBackend,
)

log = logging.getLogger("optimem.server")

#: Library error → HTTP status; the first class in an error's MRO that is listed wins.
LIBRARY_STATUS: dict[type[OptimemError], int] = {
    SessionNotFound: 404,
    PageNotFound: 404,
    TurnNotFound: 404,
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
        415: "A body that is not sent as application/json.",
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
    """A `validation_error`'s message: one ``where: what`` sentence per error (the first five),
    for the body shape the caller meant."""
    messages = list(dict.fromkeys(_message(err) for err in _intended(list(errors))))
    return "; ".join(messages[:5]) or "invalid request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if _not_json(request, errors):
        return _json(
            415,
            "unsupported_media_type",
            f"the body must be JSON, sent with Content-Type: application/json "
            f"(got {request.headers.get('content-type') or 'no Content-Type'})",
        )
    return _json(422, "validation_error", validation_message(errors))


#: Content types whose body FastAPI parses as JSON.
JSON_TYPES = ("application/json",)


def _not_json(request: Request, errors: list[dict[str, Any]]) -> bool:
    """A body was expected, and it did not come as JSON."""
    if not any(err.get("loc", ())[:1] == ("body",) for err in errors):
        return False
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return not (media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json")))


def _intended(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The errors of the one body shape the caller meant, where a body may take several.

    A body that is one turn or a batch fails against both shapes; the shape with the fewest
    missing top-level fields (then the fewest errors) is the one meant, and only its errors
    are told, so a bad role is one sentence, not two about two shapes.
    """
    members: dict[str, list[dict[str, Any]]] = {}
    for err in errors:
        loc = err.get("loc", ())
        if len(loc) >= 2 and loc[0] == "body" and isinstance(loc[1], str) and loc[1][:1].isupper():
            members.setdefault(loc[1], []).append(err)
    if len(members) < 2:
        return errors

    def mismatch(member_errors: list[dict[str, Any]]) -> tuple[int, int]:
        missing = sum(1 for e in member_errors if e.get("type") == "missing" and len(e["loc"]) == 3)
        return missing, len(member_errors)

    meant = min(members.values(), key=mismatch)
    return [{**err, "loc": ("body", *err["loc"][2:])} for err in meant]


def _message(err: dict[str, Any]) -> str:
    """One sentence for one error: where (``turns[0].role``), then what is wrong."""
    where = ""
    for part in err.get("loc", ()):
        if part == "body" and not where:
            continue
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    kind, msg = err.get("type", ""), err.get("msg", "invalid")
    if kind == "json_invalid":
        return f"the body is not valid JSON ({err.get('ctx', {}).get('error', msg)})"
    if kind.endswith("_type") and "valid dictionary" in msg:
        msg = "expected a JSON object"
    return f"{where or 'body'}: {msg}"


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
