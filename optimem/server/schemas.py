"""Request and response bodies of `/v1`: pydantic models with examples, built from the records' `to_dict()`.

They are the service's contract, kept apart from the library's records: a response model
declares the fields it sends and ignores any others a newer record carries.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Interval
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)

MAX_ID = 2**53 - 1  # exact as a JSON number in every client
SESSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
SESSION_RULE = "1-128 characters: letters, digits and . _ : @ - (starting with a letter or digit)"
#: What a path or body may name: a tenant's session name, or (a service without keys, whose one
#: local caller sees every session of the database) a full library id such as ``acme/thread-42``.
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]*(?:/[A-Za-z0-9][A-Za-z0-9._:@-]*)*$"
SESSION_ID_MAX = 256
SESSION_ID_RULE = (
    f"with API keys, {SESSION_RULE}; without keys, the session's full id: such names joined by '/',"
    f" at most {SESSION_ID_MAX} characters"
)
Role = Literal["user", "assistant", "system", "tool"]
ModeName = Literal["gundam", "large", "base", "small", "tiny"]


def _iso_text(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("expected an ISO 8601 date-time string")
    return value


def _json_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected an integer")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("expected an integer")
    return int(value)


#: An integer as JSON Schema means it: 3 or 3.0, never "3" or true.
JsonInt = Annotated[int, BeforeValidator(_json_int)]

# the one visible character must not be a control character either (\S alone would let one in)
NAME_BODY = r"[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*"


def _speaker_name(value: str) -> str:
    # the renderer cannot lay out control characters in a speaker label (they are placeholders
    # only in content), so the service refuses them; surrounding whitespace is trimmed
    value = value.strip()
    if len(value) > 200 or not re.fullmatch(NAME_BODY, value):
        raise ValueError("name must be 1-200 characters, not blank, without control characters")
    return value


SpeakerName = Annotated[str, AfterValidator(_speaker_name)]

#: A date-time given as an ISO 8601 string (not coerced from numbers).
IsoDatetime = Annotated[datetime, BeforeValidator(_iso_text)]


#: Holds a character that is not whitespace. JSON Schema's regex dialect (ECMA-262) counts
#: fewer characters as whitespace than Python's str.isspace(), which the library's blank-turn
#: check uses: the ASCII separators U+001C-U+001F and U+0085 are named so both agree.
NOT_BLANK = r"[^\s\u001c-\u001f\u0085]"


class _Out(BaseModel):
    model_config = ConfigDict(extra="ignore")


# -- errors ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    type: str = Field(examples=["session_not_found"])
    message: str = Field(examples=["no session 'thread-42'"])


class ErrorBody(BaseModel):
    """Every error the service answers."""

    error: ErrorDetail


# -- turns -----------------------------------------------------------------------------------


class TurnIn(BaseModel):
    """One chat message to remember."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"role": "user", "content": "The cutover ticket is OPS-4821."}]}
    )

    role: Role
    content: str = Field(
        description="The message text: not blank, at most 4,000,000 characters (the library's rules and messages).",
        json_schema_extra={"minLength": 1, "maxLength": 4_000_000, "pattern": NOT_BLANK},
    )
    name: SpeakerName | None = Field(
        default=None,
        description="Speaker name: not blank, no control characters, at most 200 characters (trimmed).",
        json_schema_extra={"maxLength": 200, "pattern": f"^{NAME_BODY}$"},
    )
    created_at: IsoDatetime | None = Field(default=None, description="ISO 8601; default: now.")
    metadata: dict[str, Any] | None = None
    external_id: str | None = Field(
        default=None, min_length=1, max_length=256, description="Your id for the turn, unique in the session."
    )


class TurnsIn(BaseModel):
    """A batch of turns, stored all or nothing."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "turns": [
                        {"role": "user", "content": "When is the cutover?", "external_id": "m1"},
                        {
                            "role": "assistant",
                            "content": "Saturday 02:00 UTC, ticket OPS-4821.",
                            "external_id": "m2",
                        },
                    ],
                    "skip_existing": True,
                }
            ]
        }
    )

    turns: list[TurnIn] = Field(min_length=1)
    skip_existing: StrictBool = Field(
        default=False,
        description="Turns whose external_id is already stored are not added again (safe retries).",
    )


class TurnsAdded(BaseModel):
    session: str
    turn_ids: list[int] = Field(examples=[[1, 2]])


class TurnOut(_Out):
    id: int = Field(description="The turn's id, global to the database (what the API takes).")
    number: int = Field(description="The turn's number in its session (1, 2, …), what a person reads.")
    seq: int
    role: str
    content: str | None = Field(description="None once the session's archive was dropped.")
    name: str | None = None
    created_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    external_id: str | None = None
    text_tokens: int
    paged: bool


class TurnsOut(BaseModel):
    session: str
    total: int = Field(description="Turns in the session.")
    turns: list[TurnOut]


# -- pages -----------------------------------------------------------------------------------


class PageOut(_Out):
    id: int = Field(description="The page's id, global to the database (what the API takes).")
    number: int = Field(description="The page's number in its session (1, 2, …), what a person reads.")
    mode: ModeName
    creation_mode: ModeName
    turn_ids: list[int]
    turn_numbers: list[int] = Field(
        description="Numbers in the session of the first and last turn on the page.",
        min_length=2,
        max_length=2,
    )
    text_tokens: int = Field(description="Text tokens (o200k_base) of the turn content on the page.")
    positions: int = Field(description="Decoder positions the page costs at its current mode.")
    compression: float = Field(description="text_tokens ÷ positions.")
    chars: int
    created_at: datetime
    aged_at: datetime | None = None
    font_px: int
    canvas: int

    @model_validator(mode="before")
    @classmethod
    def _compression(cls, data: Any) -> Any:
        if isinstance(data, dict) and "compression" not in data and data.get("positions"):
            data = {**data, "compression": data["text_tokens"] / data["positions"]}
        if isinstance(data, dict) and "turn_numbers" not in data and data.get("turn_ids"):
            last = data.get("last_turn_seq", 0)  # a page's turns are consecutive in its session
            data = {**data, "turn_numbers": [last - len(data["turn_ids"]) + 1, last]}
        return data


class PagesOut(BaseModel):
    session: str
    pages: list[PageOut]


# -- compress --------------------------------------------------------------------------------


class CompressIn(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"session": "thread-42", "flush": False}]})

    session: str = Field(
        pattern=SESSION_ID_PATTERN, max_length=SESSION_ID_MAX, description=f"Session id: {SESSION_ID_RULE}."
    )
    flush: StrictBool = Field(
        default=False, description="Also page the newest turns and a partly filled last page."
    )


class Aged(BaseModel):
    page_id: int
    from_mode: ModeName
    to_mode: ModeName


class CompressOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "session": "thread-42",
                    "created": [7],
                    "aged": [{"page_id": 3, "from_mode": "small", "to_mode": "tiny"}],
                    "tokens_before": 5210,
                    "tokens_after": 3890,
                    "over_budget": False,
                }
            ]
        }
    )

    session: str
    created: list[int] = Field(description="Ids of the pages made.")
    aged: list[Aged] = Field(description="Pages moved down the ladder.")
    tokens_before: int
    tokens_after: int
    over_budget: bool


# -- recall ----------------------------------------------------------------------------------


class RecallTurnsIn(BaseModel):
    """Read turns back whole by id, stitched over the pages that hold them."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"session": "thread-42", "turn_ids": [3, 4]}]}
    )

    session: str = Field(pattern=SESSION_PATTERN, description=f"Session id: {SESSION_RULE}.")
    turn_ids: list[Annotated[int, Interval(ge=1, le=MAX_ID), BeforeValidator(_json_int)]] = Field(
        min_length=1, max_length=200, description="Turn ids of the session, at most 200."
    )


class RecalledTurnOut(_Out):
    turn_id: int
    role: str
    name: str | None = None
    text: str = Field(description="The turn as typed: wraps removed, its own line breaks kept.")
    verified: bool | None = Field(
        description="True when every line of it passed its check; false: distrust it; null: not checked."
    )
    pages: list[int] = Field(description="Pages it was read from (empty while it is kept as text).")


class RecallTurnsOut(_Out):
    session: str
    turns: list[RecalledTurnOut]


class RecallByIds(BaseModel):
    """Read pages back by id."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"session": "thread-42", "page_ids": [1, 2]}]}
    )

    session: str = Field(
        pattern=SESSION_ID_PATTERN, max_length=SESSION_ID_MAX, description=f"Session id: {SESSION_ID_RULE}."
    )
    page_ids: list[Annotated[int, Interval(ge=1, le=MAX_ID), BeforeValidator(_json_int)]] = Field(
        min_length=1, description="At most the service's pages-per-recall limit (maxItems here)."
    )


class RecallByQuery(BaseModel):
    """Search the session's pages."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"session": "thread-42", "query": "cutover ticket", "limit": 3}]},
    )

    session: str = Field(
        pattern=SESSION_ID_PATTERN, max_length=SESSION_ID_MAX, description=f"Session id: {SESSION_ID_RULE}."
    )
    query: str = Field(max_length=2000, json_schema_extra={"minLength": 1, "pattern": NOT_BLANK})
    limit: JsonInt = Field(default=5, ge=1, description="Hits to return (at most the service's limit).")
    wait: StrictBool = Field(
        default=False,
        description="Decode pages not read yet before searching (slower, complete).",
    )


#: Give `page_ids` or `query`, not both.
RecallIn = RecallByIds | RecallByQuery


class VerbatimOut(_Out):
    kind: str = Field(examples=["ticket"])
    value: str = Field(examples=["OPS-4821"])
    turn_id: int
    offset: int


class RecalledPage(_Out):
    page_id: int
    text: str = Field(description="Recalled text, verbatim strings restored.")
    raw_text: str = Field(description="The decoder's own output.")
    mode: ModeName
    backend: str
    confidence: float
    cached: bool
    seconds: float = Field(description="Seconds the decoder took (when it read the page).")
    turns: dict[str, str] = Field(
        description="Recalled text per turn id, when the decoder read line by line."
    )
    verbatim: list[VerbatimOut]
    note: str | None = Field(
        default=None,
        description="What was unusual about this read, e.g. decoded inline because no worker was alive.",
    )
    lines_checked: int = Field(default=0, description="Lines the page keeps a word check for.")
    lines_exact: int = Field(
        default=0, description="Lines whose recalled words pass their check (exact in every word)."
    )
    side_channel_bytes: int = Field(
        default=0, description="Bytes kept beside the image: verbatim strings, line checks, rare words."
    )
    lines: list[str] = Field(
        default_factory=list, description="The recalled text line by line, in page order."
    )
    turns_verified: dict[str, bool | None] = Field(
        default_factory=dict,
        description="Per turn id on the page: true when every line of it passed its check.",
    )
    verified: list[bool | None] = Field(
        default_factory=list,
        description="Per line: true when its words pass the line's stored check, false when they do "
        "not (unverified: distrust it), null where the page keeps no check.",
    )


class Hit(_Out):
    page_id: int
    score: float
    snippet: str
    mode: ModeName
    turn_ids: list[int]


class RecallOut(BaseModel):
    session: str
    pages: list[RecalledPage] = Field(
        default_factory=list, description="With `page_ids`: each page read back."
    )
    hits: list[Hit] = Field(default_factory=list, description="With `query`: matching pages, best first.")
    unsearched: int = Field(
        default=0, description="With `query`: pages not decoded yet (now queued), so not searched."
    )


# -- context and stats -----------------------------------------------------------------------


class ContextItemOut(_Out):
    kind: Literal["text", "page"]
    tokens: int
    presented: Literal["text", "image"] = Field(description="How the item is shown to the model.")
    turn: TurnOut | None = None
    page: PageOut | None = None
    text: str | None = Field(
        default=None, description="The page's source text when that is cheaper than its image."
    )


class ContextOut(BaseModel):
    """What a model should see within a budget, with `messages` ready for a chat API."""

    session: str
    budget_tokens: int
    tokens: int
    consumer: str | None = None
    items: list[ContextItemOut]
    omitted_turn_ids: list[int]
    omitted_page_ids: list[int]
    messages: list[dict[str, Any]] = Field(
        description='Chat messages; pages as standard image blocks {"type": "image", "base64", "mime_type"}.'
    )


class ModeStatsOut(_Out):
    pages: int
    text_tokens: int
    positions: int
    compression: float


class StatsOut(_Out):
    session: str
    consumer: str | None = None
    turns: int
    text_tokens: int
    unpaged_tokens: int
    paged_text_tokens: int
    positions: int
    context_tokens: int = Field(description="What the model sees: unpaged turns as text plus every page.")
    compression: float
    savings: float
    per_mode: dict[ModeName, ModeStatsOut]


# -- sessions ----------------------------------------------------------------------------------


class SessionsOut(BaseModel):
    sessions: list[str] = Field(examples=[["thread-42"]])


class DeletedOut(_Out):
    session: str
    deleted: dict[str, int] = Field(
        examples=[{"turns": 40, "pages": 3}], description="What was removed, by kind."
    )


# -- health ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    backend: str
    decode_queue: int
    """Pages waiting for (or in) background OCR."""
    warm_up_s: float = 0.0
    """Seconds the start spent loading the OCR engines and the spelling index (ready only after)."""
    failed_pages: int = 0
    """Pages background OCR gave up on after its retries (a recall still tries them)."""
