"""One APIRouter per resource; `main.create_app` includes them all."""

from __future__ import annotations

from . import compress, health, pages, recall, sessions, turns

# turns before the session-wide routes, delete last: the order of the OpenAPI document
ROUTERS = (health.router, turns.router, pages.router, compress.router, recall.router, sessions.router)

__all__ = ["ROUTERS"]
