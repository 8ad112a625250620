"""The memory viewer at /ui: server-rendered pages over the same data as `/v1`, with a little vendored JavaScript."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .routes import router

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the viewer on `app`: its pages under /ui and its CSS and JavaScript under /ui/static."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")


__all__ = ["install", "router"]
