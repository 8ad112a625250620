"""Name the optimem session of a LangChain thread: thread id, optionally under a namespace."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: Where a namespace comes from: a key or attribute of the runtime context, or a function
#: of the runtime context returning it (None: no namespace).
Namespace = str | Callable[[Any], str | None] | None


def namespace_of(context: Any, namespace: Namespace) -> str | None:
    if namespace is None or context is None:
        return None
    if callable(namespace):
        value = namespace(context)
    elif isinstance(context, Mapping):
        value = context.get(namespace)
    else:
        value = getattr(context, namespace, None)
    return str(value) if value not in (None, "") else None


def session_id_for(thread_id: Any, context: Any, namespace: Namespace) -> str:
    """``"<namespace>/<thread_id>"`` or ``"<thread_id>"``.

    Raises:
        ValueError: when the run has no thread id (no checkpointer config).
    """
    if thread_id in (None, ""):
        raise ValueError(
            "optical memory needs a thread id: run the agent with "
            "config={'configurable': {'thread_id': ...}} (and a checkpointer)"
        )
    ns = namespace_of(context, namespace)
    return f"{ns}/{thread_id}" if ns else str(thread_id)


def thread_id_of(config: Mapping[str, Any] | None) -> Any:
    return ((config or {}).get("configurable") or {}).get("thread_id")


def archived_text(session, page) -> str | None:
    """The source text of a page's turns from the archive, or None once it was dropped."""
    wanted = set(page.turn_ids)
    turns = [t for t in session.turns() if t.id in wanted]
    if not turns or any(t.content is None for t in turns):
        return None
    return "\n".join(f"{t.name or t.role}: {t.content}" for t in turns)
