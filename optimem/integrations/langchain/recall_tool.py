"""The `recall_memory` tool: read memory back as text, by page id, by turn ids or by query."""

from __future__ import annotations

import logging

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool

from ...errors import BackendError, InputError, PageNotFound, TurnNotFound
from ...memory import OpticalMemory, Session
from ...records import UNVERIFIED_NOTE
from .presenting import OnRecallError
from .sessions import Namespace, archived_text, session_id_for, thread_id_of

log = logging.getLogger("optimem.langchain")

DESCRIPTION = (
    "Read back earlier conversation kept in optical memory. Pass page_id to read one memory "
    "page as text, turn_ids to get those turns back whole (a page caption names its turns), or "
    "query to search every page and read the best match. Lines marked [?] were not read back "
    "exactly. Use it when a page image is too blurred to read or an older detail is needed."
)


def make_recall_tool(
    memory: OpticalMemory,
    *,
    namespace: Namespace = None,
    session_id: str | None = None,
    on_recall_error: OnRecallError = "raise",
    limit: int = 3,
    name: str = "recall_memory",
) -> BaseTool:
    """Build the recall tool for `memory`.

    Args:
        memory: The optical memory the agent's middleware writes to.
        namespace: Key or attribute of the runtime context (or a function of it) that
            prefixes the session id, e.g. ``"user_id"``; the same as the middleware's.
        session_id: A fixed session instead of the run's thread id.
        on_recall_error: When the OCR cannot read a page: ``"raise"`` (the tool call fails)
            or ``"log"`` (logged; the archived source text is returned when the archive
            holds it, else the error is raised).
        limit: Pages listed for a query.
        name: The tool's name as the model sees it.
    """

    def session_of(runtime: ToolRuntime) -> Session:
        sid = session_id or session_id_for(thread_id_of(runtime.config), runtime.context, namespace)
        return memory.session(sid)

    def recall_memory(
        runtime: ToolRuntime,
        page_id: int | None = None,
        query: str | None = None,
        turn_ids: list[int] | None = None,
    ) -> str:
        session = session_of(runtime)
        if sum(x is not None and x != "" and x != [] for x in (page_id, query, turn_ids)) != 1:
            return "Pass one of page_id, turn_ids or query."
        if not session.exists():
            return "This conversation has no memory pages yet."
        if turn_ids:
            try:
                return read_turns(session, [int(t) for t in turn_ids])
            except (InputError, TurnNotFound) as exc:
                return str(exc)
        if page_id is not None:
            try:
                return read_page(session, int(page_id), on_recall_error)
            except PageNotFound:
                return f"There is no memory page {page_id} in this conversation."
        return search(session, str(query), limit, on_recall_error)

    async def arecall_memory(
        runtime: ToolRuntime,
        page_id: int | None = None,
        query: str | None = None,
        turn_ids: list[int] | None = None,
    ) -> str:
        import asyncio

        return await asyncio.to_thread(recall_memory, runtime, page_id, query, turn_ids)

    return StructuredTool.from_function(
        func=recall_memory, coroutine=arecall_memory, name=name, description=DESCRIPTION
    )


def read_turns(session: Session, turn_ids: list[int]) -> str:
    """Turns back whole, each headed by its id and speaker; unverified ones marked."""
    parts = []
    for t in session.recall_turns(turn_ids):
        who = f"{t.role} ({t.name})" if t.name else t.role
        mark = " [?] not read back exactly" if t.verified is False else ""
        parts.append(f"turn {t.turn_id}, {who}{mark}:\n{t.text}")
    return "\n\n".join(parts)


def read_page(session: Session, page_id: int, on_recall_error: OnRecallError = "raise") -> str:
    """One page as text, headed by its turn range, mode and decoder."""
    page = session.page(page_id)
    head = f"memory page {page.id} (turns {page.turn_ids[0]}-{page.turn_ids[-1]}, {page.mode.value}"
    try:
        recall = session.recall_page(page_id)
    except BackendError as exc:
        fallback = archived_text(session, page) if on_recall_error == "log" else None
        if fallback is None:
            raise
        log.warning("page %s could not be read back by OCR; returning its archived text: %s", page_id, exc)
        return f"{head}, from the archive):\n{fallback}"
    note = f"\n{UNVERIFIED_NOTE}" if recall.unverified_lines else ""
    return f"{head}, read by {recall.backend}){note}:\n{recall.marked_text}"


def search(session: Session, query: str, limit: int, on_recall_error: OnRecallError = "raise") -> str:
    """The best-matching pages, then the best one read in full."""
    try:
        hits = session.recall(query=query, limit=limit)
    except InputError as exc:
        return str(exc)
    if not hits:
        return f"No memory page matches {query!r}."
    lines = [f"Pages matching {query!r}:"]
    for h in hits:
        first, last = h.turn_ids[0], h.turn_ids[-1]
        lines.append(
            f"- page {h.page_id} (turns {first}-{last}, {h.mode.value}) score {h.score:.2f}: {h.snippet}"
        )
    lines += ["", "Best match, " + read_page(session, hits[0].page_id, on_recall_error)]
    return "\n".join(lines)
