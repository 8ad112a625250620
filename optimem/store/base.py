"""The store protocol: what optimem persists and the records it reads back, whatever the engine.

Implementing
    A store keeps sessions, turns, pages (image, layout, stored representation), the spans
    that say which characters of which turns a page holds, the verbatim side channel, the
    decoded-text cache and its search index, and each page's reading aids. Every write that
    must land whole runs inside `transaction()`; nested calls join the outer one. `SqlStore`
    (SQLAlchemy Core, for SQLite and PostgreSQL) is the implementation; the same test suite
    runs against both engines.

Using
    store = open_store("memory.db")        # or "sqlite:///memory.db", ":memory:"
    with store.transaction():
        ids = store.add_turns("thread-1", rows)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from ..layout import LineBox, PageAids, Span, VerbatimItem
from ..modes import Mode


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def tenant_of(session_id: str) -> str:
    """The tenant a session belongs to: its id's prefix before the first ``/`` ('' without)."""
    return session_id.split("/", 1)[0] if "/" in session_id else ""


def parse_time(value: str | datetime) -> datetime:
    t = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass(frozen=True)
class StoredTurn:
    """A turn as the store keeps it (the public record is `optimem.Turn`). `content` is None
    once the session's archive has been dropped."""

    id: int
    session_id: str
    seq: int
    role: str
    content: str | None
    name: str | None
    text_tokens: int
    chars: int
    created_at: datetime
    metadata: dict
    paged: bool
    external_id: str | None = None


@dataclass(frozen=True)
class TurnTotals:
    """What pricing needs of a session's turns, without loading them."""

    count: int
    last_seq: int
    """seq of the newest turn (0 with none): ages are counted from it."""
    text_tokens: int
    unpaged_tokens: int
    """Text tokens of the turns not on a page yet (still in context as text)."""


@dataclass(frozen=True)
class StoredPage:
    """A page as the store keeps it, without its image bytes (see `Store.page_blobs`); the
    public record, priced for a consumer, is `optimem.Page`."""

    id: int
    session_id: str
    seq: int
    mode: Mode
    creation_mode: Mode
    canvas: int
    creation_canvas: int
    font_px: int
    has_cjk: bool
    text_tokens: int
    chars: int
    created_at: datetime
    aged_at: datetime | None
    last_turn_seq: int
    last_turn_at: datetime
    spans: tuple[Span, ...]
    rehearsed_seq: int | None = None
    """The session's last turn seq when the page was last rehearsed (sharpened on recall)."""

    @property
    def turn_ids(self) -> tuple[int, ...]:
        return tuple(s.turn_id for s in self.spans)

    @property
    def number(self) -> int:
        """The page's number in its session (1, 2, …): `seq`, which only the last page ever gives
        back (paging retypesets a half-empty last page), so the numbers stay 1..n."""
        return self.seq


@dataclass(frozen=True)
class NewPage:
    """Everything compress writes for one page, gathered before the transaction."""

    mode: Mode
    canvas: int
    font_px: int
    has_cjk: bool
    png: bytes
    lines: Sequence[LineBox]
    spans: Sequence[Span]
    text_tokens: int
    chars: int
    verbatim: Sequence[VerbatimItem]
    last_turn_seq: int
    last_turn_at: str
    representation: bytes | None = None
    representation_backend: str | None = None
    aids: PageAids | None = None
    """The page's reading aids (line checks, rare words), when it keeps them."""


@dataclass(frozen=True)
class PageBlobs:
    """A page's heavy parts, read apart from its record: the image, its layout and the
    representation a backend stored for it."""

    png: bytes
    layout: list[LineBox]
    """Line boxes on the creation canvas."""
    representation: bytes | None
    representation_backend: str | None
    """The backend (by fingerprint) that made `representation`."""


@dataclass(frozen=True)
class DecodedRecord:
    """A page's text as one backend (by fingerprint) read it at one mode."""

    page_id: int
    mode: Mode
    backend: str
    fingerprint: str
    text: str
    lines: tuple[str, ...] | None
    confidence: float
    seconds: float
    verified: int | None = None
    """How many lines passed their word check when this text was read (None: not checked)."""


@dataclass(frozen=True)
class SessionInfo:
    """A session's row counts and last activity, for listings."""

    id: str
    created_at: datetime
    turns: int
    pages: int
    last_activity: datetime | None


@runtime_checkable
class Store(Protocol):
    """What the memory needs from persistence. See the module docstring."""

    url: str

    def transaction(self) -> AbstractContextManager[Any]: ...
    def close(self) -> None: ...
    def schema_version(self) -> str:
        """The Alembic revision the database is at."""
        ...

    def count_request(self, key: str, minute: int) -> tuple[int, int]:
        """Count one request of `key` in `minute` (Unix time // 60); returns the requests of
        this minute so far (this one included) and of the minute before. Older minutes are
        forgotten. A service's rate limit, shared by all its processes."""
        ...

    # sessions
    def session_ids(self, prefix: str | None = None) -> list[str]: ...
    def session_info(self, session_id: str) -> SessionInfo: ...
    def has_session(self, session_id: str) -> bool: ...
    def require_session(self, session_id: str) -> None: ...
    def delete_session(self, session_id: str) -> dict[str, int]: ...

    # turns
    def add_turns(self, session_id: str, rows: Sequence[dict]) -> list[int]: ...
    def lookup_external_ids(self, session_id: str, external_ids: Iterable[str]) -> dict[str, int]: ...
    def turns(
        self, session_id: str, *, paged: bool | None = None, ids: Iterable[int] | None = None
    ) -> list[StoredTurn]:
        """The session's turns in order; only paged or unpaged ones, or only those of `ids`."""
        ...

    def turn_totals(self, session_id: str) -> TurnTotals: ...
    def span_ends(self, turn_ids: Sequence[int]) -> dict[int, int]: ...
    def drop_archive(self, session_id: str) -> int: ...

    # pages
    def insert_pages(
        self,
        session_id: str,
        new_pages: Sequence[NewPage],
        fully_paged: Sequence[int],
        reuse_id: int | None = None,
    ) -> list[int]: ...
    def unpage(self, page_id: int) -> list[int]: ...
    def pages(self, session_id: str) -> list[StoredPage]: ...
    def page(self, session_id: str, page_id: int) -> StoredPage: ...
    def page_by_id(self, page_id: int) -> StoredPage: ...
    def page_blobs(self, page_id: int) -> PageBlobs: ...
    def set_page_mode(
        self, page_id: int, mode: Mode, png: bytes, representation: bytes | None, backend: str | None
    ) -> None: ...
    def rehearse_page(
        self,
        page_id: int,
        mode: Mode,
        png: bytes,
        representation: bytes | None,
        backend: str | None,
        at_seq: int,
    ) -> None: ...
    def verbatim(self, page_id: int) -> list[VerbatimItem]: ...
    def reading_aids(self, page_id: int) -> PageAids | None: ...

    # decoded text and its search index
    def put_decoded(self, record: DecodedRecord, index_text: str) -> None: ...
    def get_decoded(self, page_id: int, mode: Mode, fingerprint: str) -> DecodedRecord | None: ...
    def search_candidates(self, session_id: str, terms: Sequence[str], limit: int) -> list[int]: ...
    def indexed_text(self, page_ids: Sequence[int]) -> dict[int, str]: ...

    def integrity_problems(self) -> list[str]: ...


def iter_chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """Slices of at most `size` items, to keep IN (...) lists within engine limits."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
