"""Liveness, readiness and Prometheus metrics, never touched by slow work.

Health needs no key. Metrics need the metrics key when the service has keys (`--metrics-key`):
they count requests for every tenant at once, so no tenant's key reads them; their labels are
route templates, methods, statuses and modes, never a tenant or session name.
"""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import MemoryDep, SettingsDep
from ..errors import ApiError, error_body, responses
from ..schemas import Health, Ready

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness: the database answers and the OCR engines are loaded and warmed up",
    responses=responses(503),
)
async def readyz(request: Request, memory: MemoryDep) -> Ready | JSONResponse:
    if getattr(request.app.state, "draining", False):
        return JSONResponse(error_body("shutting_down", "the service is shutting down"), status_code=503)
    try:
        await memory.ahas_session("readyz/probe")
    except Exception as exc:
        return JSONResponse(error_body("not_ready", f"database unusable: {exc}"), status_code=503)
    return Ready(
        backend=memory.backend.name,
        decode_queue=memory.pending_decodes(),
        warm_up_s=round(getattr(request.app.state, "warm_up_s", 0.0), 3),
        failed_pages=len(memory.decoder.failed_pages()),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics."},
        **responses(401, 403),
    },
)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    if settings.auth_enabled:
        _check_metrics_key(request, settings.metrics_key)
    registry = request.app.state.metrics.registry
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _check_metrics_key(request: Request, expected: str | None) -> None:
    """401 without the metrics key, 403 where the service has keys but no metrics key."""
    if expected is None:
        raise ApiError(
            403, "forbidden", "metrics are off: start the service with a metrics key (--metrics-key)"
        )
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(
            401,
            "unauthorized",
            "send 'Authorization: Bearer <metrics key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
