"""The exceptions optimem raises, one tree so callers can catch as broadly as they need.

OptimemError
├── InputError            bad turns, roles, budgets or options from the caller
│   └── DuplicateExternalId   a turn's external id is already stored (or given twice)
├── RenderError           text could not be typeset onto a page
├── StoreError            the database could not do what was asked
│   ├── PageNotFound
│   ├── TurnNotFound
│   ├── SessionNotFound
│   └── SchemaError       the database was written by a newer optimem
└── BackendError          an OCR decoder failed
    ├── UnknownBackend    no backend of that name
    ├── BackendUnavailable  its extra, engine or weights are missing
    ├── BackendMemoryError  a decode does not fit the memory budget (or the card)
    ├── RepresentationMismatch  stored embeddings came from another model
    └── DecodeError       a page could not be read back (names the page)
"""

from __future__ import annotations


class OptimemError(Exception):
    """Base of every error optimem raises on purpose."""


class InputError(OptimemError, ValueError):
    """The caller passed something optimem cannot store or use."""


class DuplicateExternalId(InputError):
    """A turn's `external_id` is already stored in the session, or given twice in one batch.

    Retry with `skip_existing=True` to add only the turns not stored yet.
    """


class RenderError(OptimemError):
    """Text could not be typeset onto a page."""


class StoreError(OptimemError):
    """The database could not do what was asked."""


class PageNotFound(StoreError, KeyError):
    """No page with that id in this session."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "page not found"


class TurnNotFound(StoreError, KeyError):
    """No turn with that id in this session."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "turn not found"


class SessionNotFound(StoreError, KeyError):
    """No session with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "session not found"


class SchemaError(StoreError):
    """The database schema is newer than this optimem understands."""


class BackendError(OptimemError):
    """An OCR decoder failed."""


class UnknownBackend(BackendError, LookupError):
    """No backend is registered under that name."""


class BackendUnavailable(BackendError):
    """The backend's extra, engine or weights are not installed here."""


class BackendMemoryError(BackendError):
    """A decode needs more memory than the backend's budget (`max_gpu_memory`) or the card has.

    The message says what was asked (rows, positions), what it needs and what is in use; fewer
    pages per call (`max_batch`), fewer new tokens or a larger budget make it fit.
    """


class RepresentationMismatch(BackendError):
    """A stored representation was made by a different model than the one loaded."""


class DecodeError(BackendError):
    """A page could not be read back; `page_id` names it. A failure on one line never raises
    this (that line keeps its raw reading, unverified): only a failure of the whole page."""

    def __init__(self, message: str, *, page_id: int | None = None) -> None:
        super().__init__(message)
        self.page_id = page_id

    def __reduce__(self) -> tuple:
        # keeps page_id when the error crosses from a worker process (process_pool)
        return (type(self), (str(self),), {"page_id": self.page_id})
