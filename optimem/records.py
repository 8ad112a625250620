"""What the memory API returns: turns, pages, recalls, context, stats. Plain frozen data."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .modes import Mode
from .verbatim import VerbatimItem


@dataclass(frozen=True)
class Turn:
    """A chat message as optimem keeps it."""

    id: int
    role: str
    content: str | None
    """None once the session's source archive was dropped and the turn lives only in pages."""
    seq: int
    name: str | None = None
    created_at: datetime | None = None
    metadata: dict = field(default_factory=dict)
    text_tokens: int = 0
    paged: bool = False


@dataclass(frozen=True)
class Page:
    """A page of memory: which turns it holds and what it costs now."""

    id: int
    mode: Mode
    creation_mode: Mode
    turn_ids: tuple[int, ...]
    text_tokens: int
    """Text tokens of the turn content this page holds."""
    positions: int
    """Decoder positions the page costs at its current mode."""
    chars: int
    created_at: datetime
    aged_at: datetime | None
    font_px: int
    canvas: int
    last_turn_seq: int = 0
    """Position in the session of the newest turn on this page (ages count from it)."""

    @property
    def compression(self) -> float:
        """Text tokens ÷ positions at the current mode."""
        return self.text_tokens / self.positions


@dataclass(frozen=True)
class CompressResult:
    """What one `compress()` changed."""

    created: list[int]
    aged: list[tuple[int, Mode, Mode]]
    tokens_before: int
    tokens_after: int
    over_budget: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.aged)


@dataclass(frozen=True)
class Recall:
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


@dataclass(frozen=True)
class RecallHit:
    """One page found by `recall(query=...)`."""

    page_id: int
    score: float
    snippet: str
    mode: Mode
    turn_ids: tuple[int, ...]


@dataclass(frozen=True)
class ContextItem:
    kind: Literal["text", "page"]
    tokens: int
    turn: Turn | None = None
    page: Page | None = None
    png: bytes | None = None


@dataclass(frozen=True)
class Context:
    """What a model should see: older pages as images, recent turns as text, within budget."""

    items: list[ContextItem]
    budget_tokens: int
    omitted_turn_ids: list[int]
    omitted_page_ids: list[int]

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)

    def to_messages(self) -> list[dict[str, Any]]:
        """Chat messages: each page as a user message with an image block, then the turns."""
        out: list[dict[str, Any]] = []
        for item in self.items:
            if item.kind == "page":
                assert item.page is not None and item.png is not None
                out.append(
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": page_caption(item.page)},
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
                out.append({"role": item.turn.role, "content": item.turn.content or ""})
        return out


def page_caption(page: Page) -> str:
    first, last = page.turn_ids[0], page.turn_ids[-1]
    return f"[memory page {page.id}, turns {first}-{last}, {page.mode.value}]"


@dataclass(frozen=True)
class ModeStats:
    pages: int
    text_tokens: int
    positions: int

    @property
    def compression(self) -> float:
        return self.text_tokens / self.positions if self.positions else 0.0


@dataclass(frozen=True)
class Stats:
    """Token accounting of one session."""

    turns: int
    text_tokens: int
    """All turns, as text."""
    unpaged_tokens: int
    paged_text_tokens: int
    positions: int
    per_mode: dict[Mode, ModeStats]

    @property
    def context_tokens(self) -> int:
        """What the model sees: recent turns as text plus every page at its mode."""
        return self.unpaged_tokens + self.positions

    @property
    def compression(self) -> float:
        """Paged text tokens ÷ page positions."""
        return self.paged_text_tokens / self.positions if self.positions else 0.0

    @property
    def savings(self) -> float:
        """Full history tokens ÷ tokens the model sees."""
        return self.text_tokens / self.context_tokens if self.context_tokens else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "turns": self.turns,
            "text_tokens": self.text_tokens,
            "unpaged_tokens": self.unpaged_tokens,
            "paged_text_tokens": self.paged_text_tokens,
            "positions": self.positions,
            "context_tokens": self.context_tokens,
            "compression": round(self.compression, 3),
            "savings": round(self.savings, 3),
            "per_mode": {
                m.value: {
                    "pages": s.pages,
                    "text_tokens": s.text_tokens,
                    "positions": s.positions,
                    "compression": round(s.compression, 3),
                }
                for m, s in self.per_mode.items()
            },
        }
