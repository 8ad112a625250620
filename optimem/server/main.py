"""The FastAPI app: `create_app(settings)` wires middleware, error handlers and routers; `lifespan` owns the memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from optimem import OpticalMemory, __version__

from . import apidocs, errors
from .auth import KeysFile
from .limits import BodyLimit, RateLimiter, SharedRateLimiter
from .prometheus import Metrics, RequestMetrics
from .routes import ROUTERS
from .schemas import SESSION_PATTERN, SESSION_RULE
from .settings import Settings
from .ui import install as install_viewer

log = logging.getLogger("optimem.server")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the memory (unless one was handed in), then drain the decode queue and close it."""
    settings: Settings = app.state.settings
    _log_to_stderr(settings.log_level)
    owned = app.state.memory is None
    if owned:
        app.state.memory = await asyncio.to_thread(
            OpticalMemory,
            settings.db,
            backend=settings.backend,
            policy=settings.policy,
            decode=settings.decode,
            rehearse=settings.rehearse,
            decode_workers=settings.decode_workers,
            decode_pool=settings.decode_pool,
        )
    memory: OpticalMemory = app.state.memory
    # engines, the spelling index and a compiled decoder load before the first request: /readyz
    # answers once this is done
    app.state.warm_up_s = await memory.awarm_up((1, 8)) if settings.warmup else 0.0
    log.info("optimem warmed up in %.1f s", app.state.warm_up_s)
    app.state.metrics.watch(memory)
    if memory.decode_when in ("background", "now"):  # pages a stop left unread are read now
        await memory.aresume_decoding()
    log.info("optimem serving %s with backend %s", settings.db, memory.backend.name)
    try:
        yield
    finally:
        app.state.draining = True  # in-flight requests are done: uvicorn drained them first
        pending = memory.pending_decodes()
        if pending and memory.decode_when != "queue":
            log.info(
                "stopping with %d pages waiting for OCR: reading for at most %.0f s, the rest at the next start",
                pending,
                settings.shutdown_decode_s,
            )
        if owned:
            # queued jobs are durable (workers finish them); background pages left unread are
            # resumed by the next start
            await memory.aclose(timeout=settings.shutdown_decode_s)
        else:
            await memory.await_decodes(settings.shutdown_decode_s)


def _log_to_stderr(level: str) -> None:
    """optimem's own log lines (warm-up, resumed OCR, failed pages) beside uvicorn's, at the
    service's log level; uvicorn configures only its own loggers."""
    logger = logging.getLogger("optimem")
    if not any(getattr(h, "_optimem", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        handler._optimem = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level.upper())


def create_app(settings: Settings | None = None, *, memory: OpticalMemory | None = None) -> FastAPI:
    """The optimem REST app. Pass `memory` to serve one you own (the app then leaves it open)."""
    settings = settings or Settings()
    settings.check()
    app = FastAPI(
        title="optimem",
        version=__version__,
        summary="Optical memory for chat agents: old turns become page images, read back by OCR.",
        lifespan=lifespan,
        docs_url=None,  # served offline by optimem/server/apidocs.py
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.memory = memory
    app.state.draining = False
    app.state.keys = KeysFile(settings.keys) if settings.keys else None
    if app.state.keys is not None:
        app.state.keys.records()  # a broken keys file stops the start, not the first request
    app.state.limiter = (
        SharedRateLimiter(settings.rate_per_minute, lambda: app.state.memory.store.count_request)
        if settings.shared_rate_limit
        else RateLimiter(settings.rate_per_minute)
    )
    app.state.metrics = Metrics()
    errors.install(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    for router in ROUTERS:  # the viewer (optimem/server/ui/) mounts its router here too
        app.include_router(router)
    install_viewer(app)  # the memory viewer at /ui
    apidocs.install(app)  # /docs and /redoc without a CDN
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict:
    """The generated document, with this deployment's limits written into the schemas."""
    if app.openapi_schema is None:
        settings: Settings = app.state.settings
        doc = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        schemas = doc["components"]["schemas"]
        schemas["TurnsIn"]["properties"]["turns"]["maxItems"] = settings.max_turns_per_request
        schemas["RecallByIds"]["properties"]["page_ids"]["maxItems"] = settings.max_pages_per_recall
        schemas["RecallByQuery"]["properties"]["limit"]["maximum"] = settings.max_recall_hits
        if settings.auth_enabled:  # a tenant names its sessions without '/' (docs/tenancy.md)
            _tenant_session_names(doc)
        app.openapi_schema = doc
    return app.openapi_schema


def _tenant_session_names(doc: dict) -> None:
    """Write the tenant's session-name rule where the document allows a full id."""
    rule = {"type": "string", "pattern": SESSION_PATTERN, "maxLength": 128}
    for operations in doc["paths"].values():
        for operation in operations.values():
            for param in operation.get("parameters", []):
                if param["name"] == "session" and param["in"] == "path":
                    param["schema"] = {**param["schema"], **rule}
                    param["description"] = f"Session name: {SESSION_RULE}."
    for name in ("CompressIn", "RecallByIds", "RecallByQuery"):
        prop = doc["components"]["schemas"][name]["properties"]["session"]
        prop.update(rule, description=f"Session name: {SESSION_RULE}.")


def app_from_env() -> FastAPI:
    """The uvicorn factory `optimem serve` runs in each worker: settings from `OPTIMEM_*`."""
    return create_app(Settings.from_env())
