"""Load chats to benchmark: LoCoMo JSON, plain chat JSON and the embedded default chat.

Every loader returns a `Chat`: turns in order (each with the id its source gives it) and,
where the source has them, questions whose answers sit in known evidence turns. Nothing
here touches a memory or a backend.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..turns import ROLES, load_chat, validate_turn

#: LoCoMo's QA categories: 1 multi-hop, 2 temporal, 3 open-domain, 4 single-hop are
#: answerable; 5 is adversarial (the chat holds no answer).
LOCOMO_ANSWERABLE = frozenset({1, 2, 3, 4})
LOCOMO_CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}

DEFAULT_CHAT = "default"


@dataclass(frozen=True)
class ChatTurn:
    """One message of a chat to replay."""

    id: str
    """The id the source gives the turn (LoCoMo's ``dia_id``, the default chat's ``s1-t2``)."""
    role: str
    content: str
    name: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class Question:
    """A question whose answer text should be found in its evidence turns."""

    question: str
    answer: str
    evidence: tuple[str, ...]
    """Source ids of the turns that hold the answer."""
    category: str
    answerable: bool = True


@dataclass(frozen=True)
class Chat:
    name: str
    source: str
    """File path, or ``optimem:default_chat.json`` for the embedded chat."""
    format: str
    """'locomo', 'plain' or 'optimem' (the default chat's sessions + questions format)."""
    turns: tuple[ChatTurn, ...]
    questions: tuple[Question, ...] = ()
    skipped_turns: int = 0
    """Source turns with nothing to remember (no text, no caption)."""
    meta: dict[str, Any] = field(default_factory=dict)

    def limit(self, n: int | None) -> Chat:
        """The first `n` turns, with only the questions whose evidence lies among them."""
        if n is None or n >= len(self.turns):
            return self
        if n <= 0:
            raise InputError(f"limit must be positive, got {n}")
        turns = self.turns[:n]
        kept = {t.id for t in turns}
        questions = tuple(q for q in self.questions if q.evidence and set(q.evidence) <= kept)
        meta = dict(self.meta, limited_to=n, turns_in_source=len(self.turns))
        return Chat(self.name, self.source, self.format, turns, questions, self.skipped_turns, meta)


# ---------------------------------------------------------------------------------------------
# Entry points


def load(spec: str | Path) -> Chat:
    """A chat from a path (format detected from the JSON) or ``"default"`` (embedded)."""
    if str(spec) == DEFAULT_CHAT:
        return load_default()
    path = Path(spec)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"no such chat file: {path}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(raw, list) or (isinstance(raw, dict) and "turns" in raw and "sessions" not in raw):
        return load_plain(path, name=path.stem)
    return from_json(raw, name=path.stem, source=str(path))


def load_many(specs: Sequence[str | Path]) -> list[Chat]:
    """Each spec may be a file, a folder (its ``*.json`` files, sorted) or ``"default"``."""
    chats: list[Chat] = []
    for spec in specs or [DEFAULT_CHAT]:
        path = Path(spec)
        if str(spec) != DEFAULT_CHAT and path.is_dir():
            files = sorted(path.glob("*.json"))
            if not files:
                raise InputError(f"{path}: folder holds no .json chat files")
            chats += [load(f) for f in files]
        else:
            chats.append(load(spec))
    return chats


def from_json(raw: Any, *, name: str, source: str) -> Chat:
    """Detect the format of parsed JSON and load it."""
    if isinstance(raw, dict) and "qa" in raw and "speaker_a" in raw:
        return load_locomo(raw, name=name, source=source)
    if isinstance(raw, dict) and "sessions" in raw:
        return load_optimem(raw, name=name, source=source)
    raise InputError(
        f"{source}: unknown chat format; expected LoCoMo (speaker_a, session_N, qa), "
        '{"turns": [{"role", "content"}]} or {"sessions": [...], "questions": [...]}'
    )


def load_default() -> Chat:
    """The chat embedded in optimem (optimem/data/default_chat.json)."""
    raw = json.loads(resources.files("optimem.data").joinpath("default_chat.json").read_text("utf-8"))
    return load_optimem(raw, name="default_chat", source="optimem:default_chat.json")


# ---------------------------------------------------------------------------------------------
# Formats


def load_plain(path: str | Path, *, name: str) -> Chat:
    """A plain chat file, read by the same rules as the CLI (`optimem.turns.load_chat`):
    ``{"turns": [{"role", "content", "name"?}]}`` or a bare list. Whitespace-only turns are
    skipped and counted; any other bad turn is an InputError naming it."""
    source = str(path)
    turns: list[ChatTurn] = []
    skipped = 0
    for i, item in enumerate(load_chat(path)):
        role, content = str(item.get("role")), item.get("content")
        if isinstance(content, str) and not content.strip():
            skipped += 1
            continue
        try:
            validate_turn(item.get("role"), content, item.get("name"))  # type: ignore[arg-type]
        except InputError as exc:
            raise InputError(f"{source}: turn {i}: {exc}") from None
        assert isinstance(content, str)
        turns.append(ChatTurn(str(item.get("id", f"t{i + 1}")), role, content, _name(item.get("name"))))
    if not turns:
        raise InputError(f"{source}: the chat holds no turns with text")
    return Chat(name, source, "plain", tuple(turns), (), skipped)


def load_optimem(raw: dict, *, name: str, source: str) -> Chat:
    """The default chat's format: sessions → turns with ids, plus questions with evidence."""
    turns: list[ChatTurn] = []
    for session in raw.get("sessions", []):
        started = _iso(session.get("started_at"))
        for t in session.get("turns", []):
            if t.get("role") not in ROLES or not isinstance(t.get("content"), str):
                raise InputError(f"{source}: turn {t.get('id')!r} needs a known role and string content")
            turns.append(ChatTurn(str(t["id"]), t["role"], t["content"], _name(t.get("name")), started))
    ids = {t.id for t in turns}
    questions = []
    for q in raw.get("questions", []):
        evidence = tuple(e for e in q.get("evidence", []) if e in ids)
        if not evidence:
            continue
        questions.append(
            Question(
                str(q["question"]),
                str(q["answer"]),
                evidence,
                str(q.get("category", "")),
                answerable=q.get("answer") is not None,
            )
        )
    meta = {k: raw[k] for k in ("title", "license") if k in raw}
    return Chat(name, source, "optimem", tuple(turns), tuple(questions), 0, meta)


_LOCOMO_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*([ap]m)\s+on\s+(\d{1,2})\s+(\w+),?\s+(\d{4})\s*$", re.I)


def load_locomo(raw: dict, *, name: str, source: str) -> Chat:
    """A LoCoMo conversation: ``session_N`` lists of ``{speaker, dia_id, text}`` and ``qa``.

    speaker_a becomes the ``user``, speaker_b the ``assistant``; each keeps their name. A
    shared photo is remembered as its caption, in brackets after the text, as LoCoMo's
    own evaluation does (``[shares a photo of ...]``).
    """
    speaker_a, speaker_b = raw.get("speaker_a"), raw.get("speaker_b")
    conv = raw.get("conversation", raw)  # the multi-conversation release nests it
    speaker_a = conv.get("speaker_a", speaker_a)
    speaker_b = conv.get("speaker_b", speaker_b)
    numbers = sorted(
        int(m.group(1))
        for k in conv
        if (m := re.fullmatch(r"session_(\d+)", k)) and isinstance(conv[k], list)
    )
    turns: list[ChatTurn] = []
    skipped = 0
    for n in numbers:
        when = _locomo_time(conv.get(f"session_{n}_date_time"))
        for t in conv[f"session_{n}"]:
            text = (t.get("text") or "").strip()
            caption = (t.get("blip_caption") or "").strip()
            if caption:
                text = f"{text} [shares {caption}]".strip()
            if not text:
                skipped += 1
                continue
            speaker = t.get("speaker")
            role = "user" if speaker == speaker_a else "assistant"
            turns.append(ChatTurn(str(t["dia_id"]), role, text, _name(speaker), when))
    ids = {t.id for t in turns}
    questions = []
    for q in raw.get("qa", []):
        category = int(q.get("category", 0))
        evidence = tuple(e for e in _locomo_evidence(q.get("evidence", [])) if e in ids)
        answer = q.get("answer")
        questions.append(
            Question(
                str(q.get("question", "")),
                "" if answer is None else str(answer),
                evidence,
                LOCOMO_CATEGORIES.get(category, str(category)),
                answerable=category in LOCOMO_ANSWERABLE and answer is not None and bool(evidence),
            )
        )
    meta = {"speakers": [speaker_a, speaker_b]}
    return Chat(name, source, "locomo", tuple(turns), tuple(questions), skipped, meta)


def _locomo_evidence(items: Sequence[str]) -> list[str]:
    # a few entries join two ids ("D8:6; D9:17"); some are malformed ("D") and are dropped
    out: list[str] = []
    for item in items:
        out += [p for p in re.split(r"[;,\s]+", str(item)) if re.fullmatch(r"D\d+:\d+", p)]
    return out


def _locomo_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    m = _LOCOMO_TIME.match(value)
    if not m:
        return None
    hour, minute, ampm, day, month, year = m.groups()
    try:
        parsed = datetime.strptime(f"{hour}:{minute} {ampm} {day} {month} {year}", "%I:%M %p %d %B %Y")
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC)


def _iso(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())
    return value[:200] or None
