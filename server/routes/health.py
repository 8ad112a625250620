"""Liveness, readiness and Prometheus metrics: no auth, never touched by slow work."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..deps import MemoryDep
from ..errors import error_body, responses
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
        await asyncio.to_thread(memory.has_session, "readyz/probe")
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
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Metrics."}},
)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    body = await asyncio.to_thread(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
