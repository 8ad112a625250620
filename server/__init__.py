"""optimem's REST service: a FastAPI app over the public library API (`create_app`)."""

from __future__ import annotations

from .main import create_app
from .settings import Settings

__all__ = ["Settings", "create_app"]
