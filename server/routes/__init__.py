"""One APIRouter per resource; `main.create_app` includes them all."""

from __future__ import annotations

from . import compress, health, pages, recall, sessions, turns

ROUTERS = (health.router, sessions.router, turns.router, pages.router, compress.router, recall.router)

__all__ = ["ROUTERS"]
