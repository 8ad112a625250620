"""optimem's REST service: a FastAPI app over the public library API (`create_app`).

Imported lazily, so `optimem serve` and `optimem keys` load without FastAPI until they run.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .main import create_app

        return create_app
    if name == "Settings":
        from .settings import Settings

        return Settings
    raise AttributeError(name)
