"""Persistence behind one protocol; `open_store(url)` picks the engine by the URL's scheme.

A file path, ``sqlite:///path`` or ``":memory:"`` opens the embedded SQLite store;
``postgresql://…`` opens the PostgreSQL store (extra ``optimem[postgres]``). Both are the one
`SqlStore` (SQLAlchemy Core), with Alembic migrations run when the store opens.
"""

from __future__ import annotations

import importlib
import os

from ..errors import StoreError
from ..layout import PageAids
from .base import (
    DecodedRecord,
    NewPage,
    PageBlobs,
    SessionInfo,
    Store,
    StoredPage,
    StoredTurn,
    TurnTotals,
    parse_time,
    tenant_of,
    utcnow,
)
from .sql import SqlStore
from .sqlite import SQLiteStore

# scheme → (module, class, pip extra)
_ENGINES: dict[str, tuple[str, str, str]] = {
    "postgresql": ("optimem.store.postgres", "PostgresStore", "postgres"),
    "postgres": ("optimem.store.postgres", "PostgresStore", "postgres"),
}


def open_store(url: str | os.PathLike[str] | Store) -> Store:
    """The store for `url`: a Store is returned as is, a path or sqlite URL opens SQLite."""
    if isinstance(url, Store):
        return url
    text = os.fspath(url)
    scheme = text.split("://", 1)[0].split("+", 1)[0].lower() if "://" in text else ""
    if not scheme or scheme == "sqlite":
        return SQLiteStore(text)
    try:
        module_name, class_name, extra = _ENGINES[scheme]
    except KeyError:
        known = ", ".join(["a file path", "sqlite:///path", *(f"{s}://…" for s in _ENGINES)])
        raise StoreError(f"unsupported database URL scheme {scheme!r}: use {known}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StoreError(
            f"the {scheme} store needs {exc.name or exc}: pip install 'optimem[{extra}]'"
        ) from exc
    return getattr(module, class_name)(text)


__all__ = [
    "DecodedRecord",
    "NewPage",
    "PageAids",
    "PageBlobs",
    "SQLiteStore",
    "SessionInfo",
    "SqlStore",
    "Store",
    "StoredPage",
    "StoredTurn",
    "TurnTotals",
    "open_store",
    "parse_time",
    "tenant_of",
    "utcnow",
]
