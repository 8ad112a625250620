"""What the memory API returns: turns, pages, recalls, context, stats. Plain frozen data.

Every record round-trips through JSON: `to_dict()` gives plain JSON values (datetimes as
ISO 8601 strings, modes by name, PNG bytes as base64) and `from_dict()` reads them back, so
the CLI, the REST service and the integrations all speak the same shapes.
"""

from __future__ import annotations

import base64
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal, TypeVar, Union

from .aging.pricing import page_caption
from .layout import VerbatimItem, speaker
from .modes import Mode

R = TypeVar("R", bound="Record")


def _to_json(value: Any) -> Any:
    if isinstance(value, Record | VerbatimItem):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mode):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(_to_json(k)): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _from_json(args[0], value) if len(args) == 1 else value
    if origin is Literal or tp is Any:
        return value
    if origin in (tuple, list):
        (item, *_) = typing.get_args(tp) or (Any,)
        items = [_from_json(item, v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        k, v = typing.get_args(tp) or (Any, Any)
        return {_from_json(k, key): _from_json(v, val) for key, val in value.items()}
    if isinstance(tp, type):
        if issubclass(tp, Mode):
            return Mode(value)
        if issubclass(tp, datetime):
            return datetime.fromisoformat(value)
        if issubclass(tp, bytes):
            return base64.b64decode(value)
        if issubclass(tp, int) and not isinstance(value, bool):
            return int(value)
        if issubclass(tp, float):
            return float(value)
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            names = {f.name for f in dataclasses.fields(tp) if f.init}
            return tp(**{k: _from_json(hints[k], v) for k, v in value.items() if k in names})
    return value


class Record:
    """Mixin for the API's frozen dataclasses: lossless JSON round trips."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: ISO datetimes, modes by name, bytes as base64."""
        return _to_json(self)

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any]) -> R:
        """The record `to_dict()` described; unknown keys (derived values) are ignored."""
        return _from_json(cls, data)


#: Starts a recalled line whose words did not pass their check, in text shown to a model.
UNVERIFIED_MARK = "[?] "
#: Tells a model what the mark means (said once wherever marked text is shown).
UNVERIFIED_NOTE = "Lines starting with [?] were not read back exactly: distrust their words and numbers."


@dataclass(frozen=True)
class Turn(Record):
    """A chat message as optimem keeps it."""

    id: int
    role: str
    content: str | None
    """None once the session's source archive was dropped and the turn lives only in pages."""
    seq: int
    name: str | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    text_tokens: int = 0
    paged: bool = False
    external_id: str | None = None
    """The caller's own id for the turn (unique in its session), e.g. a LangChain message id."""
    number: int = 0
    """The turn's number in its session (1, 2, …), what a person reads; `id` is global to the
    database (what the API takes)."""


@dataclass(frozen=True)
class Page(Record):
    """A page of memory: which turns it holds and what it costs now."""

    id: int
    mode: Mode
    creation_mode: Mode
    turn_ids: tuple[int, ...]
    text_tokens: int
    """Text tokens of the turn content this page holds."""
    positions: int
    """Decoder positions the page image costs at its current mode (the backend's count)."""
    chars: int
    created_at: datetime
    aged_at: datetime | None
    font_px: int
    canvas: int
    last_turn_seq: int = 0
    """Position in the session of the newest turn on this page (ages count from it)."""
    number: int = 0
    """The page's number in its session (1, 2, …), what a person reads; `id` is global to the
    database (what the API takes)."""

    @property
    def turn_numbers(self) -> tuple[int, int]:
        """Numbers in the session of the first and last turn on the page (its turns are
        consecutive, the last one numbered `last_turn_seq`)."""
        return self.last_turn_seq - len(self.turn_ids) + 1, self.last_turn_seq

    @property
    def compression(self) -> float:
        """Text tokens ÷ positions at the current mode."""
        return self.text_tokens / self.positions

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {
            "compression": round(self.compression, 3),
            "turn_numbers": list(self.turn_numbers),
        }


@dataclass(frozen=True)
class CompressResult(Record):
    """What one `compress()` changed, and the context cost before and after (as `stats()`)."""

    created: list[int]
    aged: list[tuple[int, Mode, Mode]]
    tokens_before: int
    tokens_after: int
    over_budget: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.aged)


@dataclass(frozen=True)
class Recall(Record):
    """A page read back: text (verbatim strings restored), and how it was read."""

    page_id: int
    text: str
    raw_text: str
    """The decoder's output before the verbatim side channel repaired it."""
    mode: Mode
    backend: str
    confidence: float
    cached: bool
    seconds: float
    turns: dict[int, str]
    """Recalled text per turn id, when the decoder read line by line."""
    verbatim: list[VerbatimItem]
    note: str | None = None
    """What was unusual about this read, e.g. decoded inline because no worker was alive."""
    lines_checked: int = 0
    """Lines the page keeps a word check for (0 for pages made without checks)."""
    lines_exact: int = 0
    """Of those, lines whose recalled words pass their check: exact in every word."""
    side_channel_bytes: int = 0
    """Bytes kept beside the page's image: verbatim strings, line checks and rare words."""
    lines: tuple[str, ...] = ()
    """The recalled text line by line, in page order (one per typeset line when the decoder
    read line by line; `text` is these joined with line breaks)."""
    verified: tuple[bool | None, ...] = ()
    """Per line of `lines`: True when its words pass the line's check (exact in every word),
    False when they do not (unverified: distrust it), None where the page keeps no check."""
    turns_verified: dict[int, bool | None] = field(default_factory=dict)
    """Per turn id of `turns`: True when every line of it on this page passed its check, False
    when one did not, None when the page keeps no checks."""

    @property
    def unverified_lines(self) -> list[int]:
        """Indices of `lines` whose words did not pass their check."""
        return [i for i, ok in enumerate(self.verified) if ok is False]

    @property
    def marked_text(self) -> str:
        """`text` for a model to read: each unverified line starts with `UNVERIFIED_MARK`, so
        it knows which words to distrust (see `UNVERIFIED_NOTE`)."""
        if not self.unverified_lines:
            return self.text
        return "\n".join(
            f"{UNVERIFIED_MARK}{line}" if ok is False else line
            for line, ok in zip(self.lines, self.verified, strict=True)
        )


@dataclass(frozen=True)
class RecalledTurn(Record):
    """One turn read back whole, stitched over the pages that hold it (`Session.recall_turns`)."""

    turn_id: int
    role: str
    name: str | None
    text: str
    """The turn as typed: wraps removed, its own line breaks kept, the speaker label left out."""
    verified: bool | None
    """True when every line of it passed its check (exact in every word), False when some did
    not, None when its pages keep no checks (or it is not paged: `text` is the turn itself)."""
    pages: tuple[int, ...]
    """The pages it was read from, in order (empty while it is still kept as text)."""


@dataclass(frozen=True)
class RecallHit(Record):
    """One page found by `recall(query=...)`."""

    page_id: int
    score: float
    snippet: str
    mode: Mode
    turn_ids: tuple[int, ...]


class Hits(list[RecallHit]):
    """Search results, best first; `unsearched` pages were not decoded yet (now queued)."""

    unsearched: int = 0

    def __init__(self, hits: list[RecallHit] = (), unsearched: int = 0) -> None:  # type: ignore[assignment]
        super().__init__(hits)
        self.unsearched = unsearched

    def to_dict(self) -> dict[str, Any]:
        return {"hits": [h.to_dict() for h in self], "unsearched": self.unsearched}


@dataclass(frozen=True)
class ContextItem(Record):
    """One piece of context: a recent turn as text, or a page (as its image or its text)."""

    kind: Literal["text", "page"]
    tokens: int
    turn: Turn | None = None
    page: Page | None = None
    png: bytes | None = None
    presented: Literal["image", "text"] = "image"
    """How the item is shown: a page as its image or (when cheaper) its archived source text;
    a recent turn always as text."""
    text: str | None = None
    """The page's source text with speaker labels, when presented as text."""


@dataclass(frozen=True)
class Context(Record):
    """What a model should see: older pages as images, recent turns as text, within budget."""

    items: list[ContextItem]
    budget_tokens: int
    omitted_turn_ids: list[int]
    omitted_page_ids: list[int]
    consumer: str | None = None
    """Whose image-token rule priced the pages (None: the backend's own positions)."""

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)

    def to_messages(self) -> list[dict[str, Any]]:
        """Chat messages: each page as a user message (caption + image block, or its text),
        then the recent turns with their names and tool-call fields."""
        out: list[dict[str, Any]] = []
        for item in self.items:
            if item.kind == "page":
                assert item.page is not None
                caption = page_caption(item.page)
                if item.presented == "text":
                    out.append({"role": "user", "content": f"{caption}\n{item.text or ''}"})
                    continue
                assert item.png is not None
                out.append(
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": caption},
                            {
                                "type": "image",
                                "base64": base64.b64encode(item.png).decode("ascii"),
                                "mime_type": "image/png",
                            },
                        ],
                    }
                )
            else:
                assert item.turn is not None
                out.append(turn_message(item.turn))
        return out

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"tokens": self.tokens, "messages": self.to_messages()}


def turn_message(turn: Turn) -> dict[str, Any]:
    """A turn as a chat message, keeping `name` and the tool-call fields in its metadata."""
    msg: dict[str, Any] = {"role": turn.role, "content": turn.content or ""}
    if turn.name:
        msg["name"] = turn.name
    if turn.role == "tool" and "tool_call_id" in turn.metadata:
        msg["tool_call_id"] = turn.metadata["tool_call_id"]
    if turn.role == "assistant" and turn.metadata.get("tool_calls"):
        msg["tool_calls"] = turn.metadata["tool_calls"]
    return msg


def page_text(pieces: list[tuple[str, str | None, str]]) -> str:
    """A page's source shown as text: one "speaker: text" paragraph per (role, name, text)."""
    return "\n".join(f"{speaker(role, name)}: {text}" for role, name, text in pieces)


@dataclass(frozen=True)
class ModeStats(Record):
    pages: int
    text_tokens: int
    positions: int

    @property
    def compression(self) -> float:
        return self.text_tokens / self.positions if self.positions else 0.0


@dataclass(frozen=True)
class Stats(Record):
    """Token accounting of one session, priced like `context()` prices it."""

    turns: int
    text_tokens: int
    """All turns, as text."""
    unpaged_tokens: int
    paged_text_tokens: int
    positions: int
    """Page images at their modes (the backend's positions, or the consumer's image tokens)."""
    per_mode: dict[Mode, ModeStats]
    page_tokens: int = 0
    """What the pages cost in context: each at the cheaper of its image + caption and its text."""
    consumer: str | None = None
    failed_pages: tuple[int, ...] = ()
    """Pages background OCR failed to read (it stopped retrying them); a recall still tries and
    raises `DecodeError` naming the page."""

    @property
    def context_tokens(self) -> int:
        """What the model sees with nothing omitted: recent turns as text plus every page."""
        return self.unpaged_tokens + self.page_tokens

    @property
    def compression(self) -> float:
        """Paged text tokens ÷ page positions."""
        return self.paged_text_tokens / self.positions if self.positions else 0.0

    @property
    def savings(self) -> float:
        """Full history tokens ÷ tokens the model sees."""
        return self.text_tokens / self.context_tokens if self.context_tokens else 1.0

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for mode, stats in self.per_mode.items():
            out["per_mode"][mode.value]["compression"] = round(stats.compression, 3)
        return out | {
            "context_tokens": self.context_tokens,
            "compression": round(self.compression, 3),
            "savings": round(self.savings, 3),
        }

    def as_dict(self) -> dict[str, Any]:
        """Deprecated name of `to_dict()`."""
        return self.to_dict()


@dataclass(frozen=True)
class Deleted(Record):
    """What `Session.delete()` removed."""

    session_id: str
    turns: int
    pages: int
    decoded: int
    verbatim: int
