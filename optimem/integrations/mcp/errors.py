"""Failures as MCP tool errors, with the REST service's error types and messages.

A tool error's text is exactly the REST error body, ``{"error": {"type", "message"}}``: the
same `type` (``session_not_found``, ``page_not_found``, ``duplicate_external_id``,
``validation_error``, ``too_many_pages``, ``rate_limited``, …) and the same message, with the
caller's tenant taken out. Nothing a caller sends can crash the server: an unexpected
exception is logged and answered as ``internal_error``, as the REST service does.

    Exception (in a tool) ──guarded──▶ Refused(ToolError) ──SDK──▶ ToolError("Error executing…")
        ──OptimemServer.call_tool──▶ CallToolResult(is_error=True, text=the REST body)
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp_types import CallToolResult, TextContent
from pydantic import ValidationError

from optimem.server.errors import (
    ApiError,
    error_body,
    error_type,
    library_status,
    validation_message,
    without_tenant,
)

from ...errors import OptimemError

log = logging.getLogger("optimem.mcp")

P = ParamSpec("P")
T = TypeVar("T")

INTERNAL = ("internal_error", "internal server error (logged on the server)")


class Refused(ToolError):
    """A tool's failure, already in the REST service's words (`text` is the error body)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def error_text(type: str, message: str) -> str:
    """The REST error body as the text of a tool error."""
    return json.dumps(error_body(type, message), ensure_ascii=False)


def describe(exc: BaseException, tenant: str | None) -> tuple[int, str, str]:
    """Status, type and message the REST service would answer `exc` with (`tenant`: the caller's
    session-id prefix, taken out of library messages)."""
    if isinstance(exc, ApiError):
        return exc.status, exc.type, exc.message
    if isinstance(exc, OptimemError):
        return library_status(exc), error_type(exc), without_tenant(str(exc), tenant)
    return 500, *INTERNAL


def guarded(
    tenant: Callable[[], str | None], *, resource: bool = False
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Wrap a tool (or resource) so every failure becomes `Refused` (a `ResourceError`)."""

    def decorate(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                status, type, message = describe(exc, _tenant_or_none(tenant))
                if not isinstance(exc, ApiError | OptimemError):
                    log.exception("unexpected error in %s", fn.__name__)
                elif status >= 500:
                    log.error("%s in %s: %s", type, fn.__name__, message)
                text = error_text(type, message)
                if not resource:
                    raise Refused(text) from exc
                raise (ResourceNotFoundError if status == 404 else ResourceError)(text) from exc

        return wrapper

    return decorate


def as_result(exc: ToolError) -> CallToolResult | None:
    """The tool error result for a failure the SDK reported as `exc`, in the REST service's words:
    a tool's own refusal, or arguments that failed the input schema (``validation_error``)."""
    cause = exc.__cause__
    if isinstance(cause, Refused):
        text = cause.text
    elif isinstance(cause, ValidationError):
        text = error_text("validation_error", validation_message(cause.errors()))
    else:
        return None
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _tenant_or_none(tenant: Callable[[], str | None]) -> str | None:
    try:
        return tenant()
    except Exception:  # the tenant only cleans the message; never fail the error path on it
        return None
