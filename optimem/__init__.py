"""optimem: optical memory for chat agents.

Older turns are typeset into page images whose cost in context tokens shrinks as they age;
an OCR model reads them back on recall.
"""

from __future__ import annotations

from .aging.policies import BudgetPolicy, TurnAgePolicy, WallClockPolicy
from .aging.pricing import Pricing
from .errors import (
    BackendError,
    BackendUnavailable,
    DuplicateExternalId,
    InputError,
    OptimemError,
    PageNotFound,
    RenderError,
    RepresentationMismatch,
    SchemaError,
    SessionNotFound,
    StoreError,
    UnknownBackend,
)
from .memory import OpticalMemory, Session
from .modes import Mode
from .records import CompressResult, Context, Deleted, Hits, Page, Recall, RecallHit, Stats, Turn

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "BudgetPolicy",
    "CompressResult",
    "Context",
    "Deleted",
    "DuplicateExternalId",
    "Hits",
    "InputError",
    "Mode",
    "OpticalMemory",
    "OptimemError",
    "Page",
    "PageNotFound",
    "Pricing",
    "Recall",
    "RecallHit",
    "RenderError",
    "RepresentationMismatch",
    "SchemaError",
    "Session",
    "SessionNotFound",
    "Stats",
    "StoreError",
    "Turn",
    "TurnAgePolicy",
    "UnknownBackend",
    "WallClockPolicy",
    "__version__",
]
