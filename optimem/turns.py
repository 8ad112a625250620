"""Turns as callers hand them in: roles, validation, coercion, chat files. One rule for all.

The library, the CLI, the REST service and the benchmark's plain-chat loader all accept turns
through here, so a chat file means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import DuplicateExternalId, InputError
from .store import utcnow
from .tokens import count_tokens

ROLES = frozenset({"user", "assistant", "system", "tool"})
MAX_TURN_CHARS = 4_000_000
MAX_EXTERNAL_ID_CHARS = 256
#: Keys a turn given as a dict may carry.
TURN_KEYS = ("role", "content", "name", "created_at", "metadata", "external_id")


def validate_turn(role: str, content: str, name: str | None = None) -> None:
    """Raise InputError for a turn optimem would store wrongly. See README: bad input."""
    if not isinstance(role, str) or role not in ROLES:
        raise InputError(f"unknown role {role!r}; use one of {', '.join(sorted(ROLES))}")
    if not isinstance(content, str):
        raise InputError(f"turn content must be str, got {type(content).__name__}")
    if not content.strip():
        raise InputError("empty or whitespace-only turn: there is nothing to remember")
    if len(content) > MAX_TURN_CHARS:
        raise InputError(
            f"turn of {len(content):,} characters exceeds the {MAX_TURN_CHARS:,} limit; split it"
        )
    for text in (content, name or ""):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(
                f"turn holds a lone surrogate at offset {exc.start} ({text[exc.start]!r}): "
                "not valid Unicode text; decode your input with errors='replace'"
            ) from None
    if name is not None and (
        not isinstance(name, str)
        or not name.strip()
        or len(name) > 200
        or any(unicodedata.category(ch) == "Cc" for ch in name)
    ):
        raise InputError("name must be a short non-empty string without line breaks or control characters")


def _as_dict(turn: Any, i: int) -> Mapping[str, Any]:
    if isinstance(turn, Mapping):
        return turn
    if isinstance(turn, tuple | list):
        if len(turn) != 2:
            raise InputError(f"turn {i}: expected (role, content), got {len(turn)} items")
        return {"role": turn[0], "content": turn[1]}
    fields = getattr(turn, "__dataclass_fields__", None)
    if fields is not None and "role" in fields:  # a Turn read back from a session
        return {k: getattr(turn, k, None) for k in TURN_KEYS}
    raise InputError(f"turn {i}: expected (role, content), a dict or a Turn")


def _created_at(value: Any, i: int) -> str:
    if value is None:
        return utcnow()
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    try:
        return datetime.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InputError(f"turn {i}: created_at {value!r} is not ISO 8601") from None


def coerce_turns(turns: Iterable[Any], encoding: str) -> list[dict[str, Any]]:
    """Validated rows ready for the store, in order; InputError names the first bad turn."""
    rows = []
    seen: set[str] = set()
    for i, raw in enumerate(turns):
        turn = _as_dict(raw, i)
        role, content, name = turn.get("role"), turn.get("content"), turn.get("name")
        try:
            validate_turn(role, content, name)  # type: ignore[arg-type]
        except InputError as exc:
            raise InputError(f"turn {i}: {exc}") from None
        assert isinstance(content, str)
        metadata = turn.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise InputError(f"turn {i}: metadata must be a JSON object")
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as exc:
            raise InputError(f"turn {i}: metadata is not JSON-serialisable: {exc}") from None
        external_id = turn.get("external_id")
        if external_id is not None:
            if (
                not isinstance(external_id, str)
                or not external_id
                or len(external_id) > MAX_EXTERNAL_ID_CHARS
            ):
                raise InputError(
                    f"turn {i}: external_id must be a non-empty string of at most {MAX_EXTERNAL_ID_CHARS} characters"
                )
            if external_id in seen:
                raise DuplicateExternalId(f"turn {i}: external_id {external_id!r} appears twice in one batch")
            seen.add(external_id)
        rows.append(
            {
                "role": role,
                "content": content,
                "name": name,
                "sha256": hashlib.sha256(content.encode("utf-8")).hexdigest(),
                "text_tokens": count_tokens(content, encoding),
                "created_at": _created_at(turn.get("created_at"), i),
                "metadata": dict(metadata),
                "external_id": external_id,
            }
        )
    return rows


def load_chat(path: str | Path) -> list[dict[str, Any]]:
    """Turns of a chat JSON file: ``{"turns": [...]}``, a bare list, or
    ``{"sessions": [{"turns": [...]}, ...]}`` (sessions concatenated in order)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read chat file {path}: {exc}") from exc
    if isinstance(data, dict) and "sessions" in data:
        sessions = data["sessions"]
        if not isinstance(sessions, list) or not all(isinstance(s, dict) for s in sessions):
            raise InputError(f"{path}: 'sessions' must be a list of {{'turns': [...]}} objects")
        turns = [t for s in sessions for t in s.get("turns", [])]
    elif isinstance(data, dict):
        turns = data.get("turns", [])
    else:
        turns = data
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise InputError(f"{path}: expected {{'turns': [{{'role': ..., 'content': ...}}]}}")
    return [{k: t[k] for k in TURN_KEYS if k in t} for t in turns]
