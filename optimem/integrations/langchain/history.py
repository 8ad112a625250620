"""`OpticalChatMessageHistory`: a `BaseChatMessageHistory` whose old turns come back as pages.

For code that still uses `RunnableWithMessageHistory` (LangChain deprecated the base class in
langchain-core 1.6.4; new agents use `OpticalMemoryMiddleware`).
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import BaseMessage

from ...memory import OpticalMemory
from .convert import ensure_ids, is_memory_message, message_to_turn
from .presenting import PRESENTS, OnRecallError, Present, memory_messages


class OpticalChatMessageHistory(BaseChatMessageHistory):
    """Messages in, `messages` out with older turns as page images, within a budget.

    Every message added is kept as a turn of the optimem session `session_id` and the session
    is compressed, so older turns are paged and aged by the memory's policy; `messages`
    returns the pages (as images, text or an index, see `present`) then the turns still kept
    as text.

    Args:
        memory: The optical memory.
        session_id: The optimem session holding this history.
        budget_tokens: What `messages` may cost the model in all.
        present: ``"images"``, ``"text"`` or ``"tool"`` (see `OpticalMemoryMiddleware`).
        consumer: Price page images by this provider's rule (`optimem.aging.pricing.CONSUMERS`).
        on_recall_error: ``"raise"`` or ``"log"`` when OCR cannot read a page for
            ``present="text"``.
    """

    def __init__(
        self,
        memory: OpticalMemory,
        session_id: str,
        *,
        budget_tokens: int = 4000,
        present: Present = "images",
        consumer: str | None = None,
        on_recall_error: OnRecallError = "raise",
    ) -> None:
        if present not in PRESENTS:
            raise ValueError(f"present must be one of {', '.join(PRESENTS)}, got {present!r}")
        self.memory = memory
        self.session = memory.session(session_id)
        self.budget_tokens = budget_tokens
        self.present: Present = present
        self.consumer = consumer
        self.on_recall_error: OnRecallError = on_recall_error

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        if not self.session.exists():
            return []
        shown, _ = memory_messages(
            self.session,
            self.budget_tokens,
            present=self.present,
            consumer=self.consumer,
            on_recall_error=self.on_recall_error,
            with_tool=self.present == "tool",  # images and text never name a tool it may not have
        )
        return list(shown)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Keep the messages as turns (optimem's own page messages are skipped), then page."""
        own = [m for m in messages if not is_memory_message(m)]
        if not own:
            return
        ensure_ids(own)
        self.session.add_turns([message_to_turn(m) for m in own], skip_existing=True)
        self.session.compress()

    def clear(self) -> None:
        """Delete the session: its turns, pages and decoded texts."""
        if self.session.exists():
            self.session.delete()
