"""`OpticalMemoryMiddleware`: page old messages of a `create_agent` thread into optical memory."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, NotRequired

from langchain.agents.middleware.types import (
    AgentMiddleware,
    AgentState,
    ModelRequest,
    ModelResponse,
    OmitFromInput,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, RemoveMessage, SystemMessage, ToolMessage
from langgraph.config import get_config
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.runtime import Runtime

from ...memory import OpticalMemory
from .convert import ensure_ids, is_memory_message, message_to_turn
from .counting import PageTokenCounter
from .presenting import PRESENTS, OnRecallError, Present, memory_messages
from .recall_tool import make_recall_tool
from .sessions import Namespace, session_id_for, thread_id_of

log = logging.getLogger("optimem.langchain")

ContextSize = tuple[Literal["tokens", "messages", "fraction"], int | float]
Trigger = ContextSize | Mapping[str, int | float] | Sequence[ContextSize | Mapping[str, int | float]]


class OpticalMemoryState(AgentState[Any]):
    """Agent state plus a small record of the thread's optical memory (ids and counts only;
    page images are attached when the model is called, never stored in the state)."""

    optical_memory: NotRequired[Annotated[dict[str, Any], OmitFromInput]]


class OpticalMemoryMiddleware(AgentMiddleware[OpticalMemoryState, Any, Any]):
    """Optical memory for `langchain.agents.create_agent`: old messages become page images.

    When `trigger` is met, the messages older than `keep` leave the graph state and go into
    the optimem session of the thread (``thread_id`` of the run's config, under an optional
    namespace from the runtime context); the memory pages them and ages older pages with its
    policy. Each model call then sees the memory (page images, or their text, or an index)
    followed by the kept messages, within `budget_tokens`. Checkpoints hold only the kept
    messages and page ids, so they stay small however long the thread grows.

    Args:
        memory: The optical memory (its backend prices pages; its policy ages them).
        trigger: When to page messages out, in `SummarizationMiddleware`'s vocabulary:
            ``("tokens", N)``, ``("messages", N)``, ``("fraction", f)`` (needs
            `max_input_tokens` or a `model` with a profile), a dict of thresholds that must
            all hold, or a list of either (any holds).
        keep: What stays as messages after paging: ``("messages", N)`` or ``("tokens", N)``.
            An assistant message with tool calls is never separated from its results.
        budget_tokens: What the model may see in all: memory plus the messages in the state.
            The memory gets what the messages leave, so a trigger well below the budget
            leaves room for pages; give the memory a policy of about budget − trigger
            (``OpticalMemory(policy="budget:1900")`` for the defaults) so its pages fit.
        present: ``"images"`` (page images, for vision models), ``"text"`` (the pages read
            back by OCR) or ``"tool"`` (a one-line index of pages; the model reads them with
            the recall tool).
        consumer: Price page images by this provider's rule (`optimem.aging.pricing.CONSUMERS`)
            instead of the backend's positions.
        namespace: Key or attribute of the runtime context (or a function of it) that
            prefixes the session id, e.g. ``"user_id"`` gives ``"<user_id>/<thread_id>"``.
        recall_tool: Register the `recall_memory` tool (``middleware.tools``). A model without
            tool calling (no ``bind_tools``, e.g. ``GenericFakeChatModel``) needs
            ``recall_tool=False``; the memory header then names no tool.
        on_recall_error: When OCR cannot read a page for ``present="text"`` or the tool:
            ``"raise"``, or ``"log"`` (logged, archived source text shown instead).
            Background decoding failures never break a turn: they are logged by the memory
            and surface on recall.
        max_input_tokens: The model's context size, for ``("fraction", f)``.
        model: A chat model whose profile gives `max_input_tokens`; also checked for tool
            calling when `recall_tool` is on.

    Between pagings the state grows from `keep` back to `trigger` (with the defaults, from 6
    messages to about 2,000 tokens of them) and the memory gets what the messages leave of
    `budget_tokens`. `OpticalMemoryMiddleware.for_budget(budget_tokens, memory=path)` sets
    trigger, keep and the memory's policy from the budget alone (`recommended_settings`).
    """

    state_schema = OpticalMemoryState

    def __init__(
        self,
        *,
        memory: OpticalMemory,
        trigger: Trigger = ("tokens", 2000),
        keep: ContextSize = ("messages", 6),
        budget_tokens: int = 4000,
        present: Present = "images",
        consumer: str | None = None,
        namespace: Namespace = None,
        recall_tool: bool = True,
        on_recall_error: OnRecallError = "raise",
        max_input_tokens: int | None = None,
        model: BaseChatModel | None = None,
    ) -> None:
        super().__init__()
        if present not in PRESENTS:
            raise ValueError(f"present must be one of {', '.join(PRESENTS)}, got {present!r}")
        if on_recall_error not in ("raise", "log"):
            raise ValueError(f"on_recall_error must be 'raise' or 'log', got {on_recall_error!r}")
        if not isinstance(budget_tokens, int) or budget_tokens <= 0:
            raise ValueError(f"budget_tokens must be a positive integer, got {budget_tokens!r}")
        if present == "tool" and not recall_tool:
            raise ValueError("present='tool' shows only an index of pages: it needs recall_tool=True")
        if recall_tool and model is not None and not supports_tools(model):
            raise ValueError(no_tools_message(model))
        if max_input_tokens is None and model is not None:
            profile = getattr(model, "profile", None) or {}
            max_input_tokens = profile.get("max_input_tokens")
        self.memory = memory
        self.max_input_tokens = max_input_tokens
        self.trigger_clauses = _clauses(trigger, max_input_tokens)
        self.keep = _keep(keep, max_input_tokens)
        self.budget_tokens = budget_tokens
        self.present: Present = present
        self.consumer = consumer
        self.namespace = namespace
        self.on_recall_error: OnRecallError = on_recall_error
        self.token_counter = PageTokenCounter(memory, consumer=consumer)
        self.tools = (
            [make_recall_tool(memory, namespace=namespace, on_recall_error=on_recall_error)]
            if recall_tool
            else []
        )

    @classmethod
    def for_budget(
        cls,
        budget_tokens: int,
        *,
        memory: str | os.PathLike[str] | OpticalMemory,
        backend: str = "cpu",
        **options: Any,
    ) -> OpticalMemoryMiddleware:
        """The recommended setting for a model that may see `budget_tokens` in all.

        `memory` is a path or URL (the memory is opened with the recommended policy) or an
        OpticalMemory whose policy you chose yourself. `options` go to the constructor
        (``present``, ``consumer``, ``recall_tool``, ``namespace`` …). See
        `recommended_settings` for the numbers.
        """
        settings = recommended_settings(budget_tokens)
        if not isinstance(memory, OpticalMemory):
            memory = OpticalMemory(memory, backend=backend, policy=settings["policy"])
        return cls(
            memory=memory,
            trigger=settings["trigger"],
            keep=settings["keep"],
            budget_tokens=budget_tokens,
            **options,
        )

    # -- hooks ------------------------------------------------------------------------------

    def before_model(self, state: OpticalMemoryState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        return self.page_out(state["messages"], self.session_id(runtime))

    async def abefore_model(self, state: OpticalMemoryState, runtime: Runtime[Any]) -> dict[str, Any] | None:
        sid = self.session_id(runtime)
        return await asyncio.to_thread(self.page_out, state["messages"], sid)

    def wrap_model_call(
        self, request: ModelRequest[Any], handler: Callable[[ModelRequest[Any]], ModelResponse[Any]]
    ) -> ModelResponse[Any]:
        self.check_tools(request)
        return handler(self.with_memory(request, self.session_id(request.runtime)))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any]:
        self.check_tools(request)
        sid = self.session_id(request.runtime)
        return await handler(await asyncio.to_thread(self.with_memory, request, sid))

    # -- the work ---------------------------------------------------------------------------

    def session_id(self, runtime: Runtime[Any]) -> str:
        """The optimem session of the running thread."""
        info = getattr(runtime, "execution_info", None)
        thread_id = getattr(info, "thread_id", None)
        if thread_id is None:
            thread_id = thread_id_of(get_config())
        return session_id_for(thread_id, runtime.context, self.namespace)

    def should_page(self, messages: Sequence[AnyMessage]) -> bool:
        """Whether the trigger holds for these messages."""
        tokens: int | None = None
        for clause in self.trigger_clauses:
            met = True
            for kind, value in clause.items():
                if kind == "messages":
                    met = len(messages) >= value
                else:
                    tokens = self.token_counter(messages) if tokens is None else tokens
                    met = tokens >= value
                if not met:
                    break
            if met:
                return True
        return False

    def cutoff(self, messages: Sequence[AnyMessage]) -> int:
        """Index of the first message to keep, never between a tool call and its results."""
        kind, value = self.keep
        if kind == "messages":
            cut = max(0, len(messages) - int(value))
        else:
            cut, total = len(messages), 0
            while cut > 0:
                total += self.token_counter([messages[cut - 1]])
                if total > value:
                    break
                cut -= 1
        return safe_cutoff(messages, cut)

    def page_out(self, messages: Sequence[AnyMessage], session_id: str) -> dict[str, Any] | None:
        """Move the messages before the cutoff into the session's memory (the state update)."""
        messages = list(messages)
        ensure_ids(messages)
        if not self.should_page(messages):
            return None
        cut = self.cutoff(messages)
        if cut <= 0:
            return None
        stay = [m for m in messages[:cut] if isinstance(m, SystemMessage) or is_memory_message(m)]
        out = [m for m in messages[:cut] if not (isinstance(m, SystemMessage) or is_memory_message(m))]
        session = self.memory.session(session_id)
        session.add_turns([message_to_turn(m) for m in out], skip_existing=True)
        result = session.compress()
        stats = session.stats(consumer=self.consumer)
        record = {
            "session_id": session_id,
            "page_ids": [p.id for p in session.pages()],
            "turns": stats.turns,
            "text_tokens": stats.text_tokens,
            "memory_tokens": stats.context_tokens,
            "over_budget": result.over_budget,
        }
        log.debug("paged %d messages of %s: %s", len(out), session_id, record)
        return {
            "messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *stay, *messages[cut:]],
            "optical_memory": record,
        }

    def offers_recall(self, request: ModelRequest[Any]) -> bool:
        """Whether this model call offers the memory's recall tool (another middleware may drop it)."""
        names = {t.name for t in self.tools}
        return any(getattr(t, "name", None) in names for t in request.tools or ())

    def check_tools(self, request: ModelRequest[Any]) -> None:
        """Fail in one clear line, before the call, when the model cannot take the recall tool."""
        if self.offers_recall(request) and not supports_tools(request.model):
            raise NotImplementedError(no_tools_message(request.model))

    def with_memory(self, request: ModelRequest[Any], session_id: str) -> ModelRequest[Any]:
        """The request with the thread's memory put before its messages, within budget."""
        if not self.memory.has_session(session_id):
            return request
        kept = self.token_counter(request.messages)
        if request.system_message is not None:
            kept += self.token_counter([request.system_message])
        shown, _ = memory_messages(
            self.memory.session(session_id),
            self.budget_tokens - kept,
            present=self.present,
            consumer=self.consumer,
            on_recall_error=self.on_recall_error,
            with_tool=self.offers_recall(request),
        )
        if not shown:
            return request
        return request.override(messages=[*shown, *request.messages])


def recommended_settings(budget_tokens: int) -> dict[str, Any]:
    """Trigger, keep and memory policy for a model that may see `budget_tokens` in all.

    Half the budget for recent messages (paging starts when they reach it, six stay), the
    rest for the memory's pages, less a margin (a fortieth of the budget, at least 100
    tokens) for the header and captions: 4,000 gives ``("tokens", 2000)`` and
    ``"budget:1900"``; 2,000 gives ``("tokens", 1000)`` and ``"budget:900"``.
    """
    if not isinstance(budget_tokens, int) or budget_tokens < 1000:
        raise ValueError(f"budget_tokens must be an integer of at least 1000, got {budget_tokens!r}")
    trigger = budget_tokens // 2
    policy = budget_tokens - trigger - max(100, budget_tokens // 40)
    return {"trigger": ("tokens", trigger), "keep": ("messages", 6), "policy": f"budget:{policy}"}


def supports_tools(model: Any) -> bool:
    """Whether a chat model implements tool calling (BaseChatModel's bind_tools only raises)."""
    bind = getattr(type(model), "bind_tools", None)
    return bind is not None and bind is not BaseChatModel.bind_tools


def no_tools_message(model: Any) -> str:
    return (
        f"{type(model).__name__} cannot call tools (no bind_tools), and OpticalMemoryMiddleware "
        "offers it the recall_memory tool: pass recall_tool=False, or use a model with tool calling"
    )


def safe_cutoff(messages: Sequence[AnyMessage], cut: int) -> int:
    """Move `cut` back so a kept tool result keeps the assistant message that called it."""
    if cut >= len(messages) or not isinstance(messages[cut], ToolMessage):
        return cut
    ids: set[str] = set()
    i = cut
    while i < len(messages) and isinstance(result := messages[i], ToolMessage):
        ids.add(result.tool_call_id)
        i += 1
    for j in range(cut - 1, -1, -1):
        m = messages[j]
        if isinstance(m, AIMessage) and ids & {c.get("id") for c in m.tool_calls}:
            return j
    return i  # results without their call: page them too rather than keep orphans


def _clauses(trigger: Trigger, max_input_tokens: int | None) -> list[dict[str, float]]:
    items = [trigger] if isinstance(trigger, tuple | Mapping) else list(trigger)
    clauses: list[dict[str, float]] = []
    for item in items:
        pairs = list(item.items()) if isinstance(item, Mapping) else [tuple(item)]
        clause: dict[str, float] = {}
        for kind, value in pairs:
            if kind not in ("tokens", "messages", "fraction") or isinstance(value, bool) or value <= 0:
                raise ValueError(f"unsupported trigger {kind!r}: {value!r}")
            if kind == "fraction":
                clause["tokens"] = _fraction(value, max_input_tokens, "trigger")
            else:
                clause[kind] = value
        clauses.append(clause)
    if not clauses:
        raise ValueError("trigger needs at least one threshold")
    return clauses


def _keep(keep: ContextSize, max_input_tokens: int | None) -> tuple[str, float]:
    kind, value = keep
    if kind == "fraction":
        return "tokens", _fraction(value, max_input_tokens, "keep")
    if kind not in ("tokens", "messages") or value < 0:
        raise ValueError(f"unsupported keep {keep!r}; use ('messages', N) or ('tokens', N)")
    return kind, value


def _fraction(value: float, max_input_tokens: int | None, what: str) -> int:
    if not 0 < value <= 1:
        raise ValueError(f"{what} fraction must be in (0, 1], got {value}")
    if not max_input_tokens:
        raise ValueError(
            f"a fractional {what} needs the model's context size: pass max_input_tokens= or a "
            "model whose profile has max_input_tokens"
        )
    return max(1, int(max_input_tokens * value))
