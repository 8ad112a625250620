"""A recording fake chat model for tests, examples and benchmarks: no LLM, no network."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

Reply = Callable[[list[BaseMessage], int], AIMessage | str]


class RecordingChatModel(BaseChatModel):
    """A chat model that answers from a script and records exactly what it receives.

    It is a stand-in for an LLM (none is reachable here): `calls` holds the messages of each
    call, as the provider would have received them. `reply(messages, call_index)` gives the
    answer (an `AIMessage`, possibly with tool calls, or a string); by default it answers
    ``"ok <n>"``. `bind_tools` records the tools and returns the model itself.
    """

    reply: Reply | None = None
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[Any] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "optimem-recording-fake"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> RecordingChatModel:
        self.bound_tools = list(tools)
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        index = len(self.calls)
        self.calls.append([m.model_copy(deep=True) for m in messages])
        answer = self.reply(messages, index) if self.reply else f"ok {index}"
        message = AIMessage(content=answer) if isinstance(answer, str) else answer
        return ChatResult(generations=[ChatGeneration(message=message)])
