"""Convert between LangChain messages and optimem turns, in both directions."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

#: Marks messages optimem built (page images, recalled text, the page index), so they are
#: never paged again and never counted as conversation.
SOURCE = "optimem"

_ROLE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def is_memory_message(message: BaseMessage) -> bool:
    """True for a message optimem added to show its memory to the model."""
    return message.additional_kwargs.get("lc_source") == SOURCE


def ensure_ids(messages: Iterable[BaseMessage]) -> None:
    """Give every message an id (the turn's external id, and what `add_messages` needs)."""
    for message in messages:
        if message.id is None:
            message.id = str(uuid.uuid4())


def message_text(message: BaseMessage) -> str:
    """The text a page should hold for `message`: its text, placeholders for other blocks,
    and the tool calls an assistant message makes."""
    parts: list[str] = []
    content = message.content
    if isinstance(content, str):
        parts.append(content)
    else:
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif block.get("type") in ("image", "image_url"):
                parts.append("[image]")
            elif block.get("type") in ("file", "audio", "video"):
                parts.append(f"[{block['type']}]")
    if isinstance(message, AIMessage):
        for call in message.tool_calls:
            args = json.dumps(call.get("args", {}), ensure_ascii=False, sort_keys=True)
            parts.append(f"[tool call {call.get('name')}: {args}]")
    text = "\n".join(p for p in parts if p.strip())
    return text if text.strip() else "[empty message]"


def message_to_turn(message: BaseMessage) -> dict[str, Any]:
    """An optimem turn dict (role, content, name, metadata, external_id) for `message`."""
    role = _ROLE.get(message.type)
    if role is None:
        raise ValueError(f"cannot keep a {message.type!r} message in optical memory")
    metadata: dict[str, Any] = {}
    if isinstance(message, AIMessage) and message.tool_calls:
        metadata["tool_calls"] = [
            {"name": c["name"], "args": c.get("args", {}), "id": c.get("id"), "type": "tool_call"}
            for c in message.tool_calls
        ]
    if isinstance(message, ToolMessage):
        metadata["tool_call_id"] = message.tool_call_id
    name = message.name if message.name and message.name.strip() and "\n" not in message.name else None
    return {
        "role": role,
        "content": message_text(message),
        "name": name[:200] if name else None,
        "metadata": metadata or None,
        "external_id": message.id,
    }


def dict_to_message(d: dict[str, Any]) -> AnyMessage:
    """A LangChain message from one of `Context.to_messages()`'s dicts."""
    role, content = d["role"], d.get("content", "")
    kwargs: dict[str, Any] = {"name": d["name"]} if d.get("name") else {}
    if role == "user":
        return HumanMessage(content=content, **kwargs)
    if role == "assistant":
        return AIMessage(content=content, tool_calls=d.get("tool_calls") or [], **kwargs)
    if role == "system":
        return SystemMessage(content=content, **kwargs)
    if role == "tool":
        return ToolMessage(content=content, tool_call_id=d.get("tool_call_id") or "", **kwargs)
    raise ValueError(f"unknown role {role!r}")


def pair_tool_calls(messages: Sequence[AnyMessage]) -> list[AnyMessage]:
    """Keep tool calls structured only where a call and all its results are both present.

    Paging or a budget can put an assistant's tool call and its result on different sides of
    a cut; providers reject a tool result without its call (and a call without results), so
    such halves are shown as plain text (the call's text already names the call).
    """
    answered: dict[str, int] = {}
    for i, m in enumerate(messages):
        if isinstance(m, ToolMessage) and m.tool_call_id:
            answered[m.tool_call_id] = i
    out: list[AnyMessage] = []
    structured: set[str] = set()
    for i, m in enumerate(messages):
        if isinstance(m, AIMessage) and m.tool_calls:
            ids = [c.get("id") for c in m.tool_calls]
            if all(cid and answered.get(cid, -1) > i for cid in ids):
                structured.update(cid for cid in ids if cid)
                out.append(m)
            else:
                out.append(m.model_copy(update={"tool_calls": [], "additional_kwargs": {}}))
        elif isinstance(m, ToolMessage) and m.tool_call_id not in structured:
            label = f"[result of tool {m.name or 'call'} {m.tool_call_id}]"
            out.append(HumanMessage(content=f"{label}\n{m.text}", id=m.id))
        else:
            out.append(m)
    return out


def mark(message: AnyMessage) -> AnyMessage:
    """Tag `message` as optimem's own (see `is_memory_message`)."""
    message.additional_kwargs["lc_source"] = SOURCE
    return message
