"""Count the tokens of LangChain messages as the model sees them, page images priced by mode."""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Iterable
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages

from ...aging.pricing import Pricing
from ...memory import OpticalMemory
from ...modes import Mode

#: Prefix of the `id` optimem gives a page's image block: ``optimem-page-<id>-<mode>``.
PAGE_BLOCK_PREFIX = "optimem-page-"

_BY_CANVAS = {Mode.TINY.canvas: Mode.TINY, Mode.SMALL.canvas: Mode.SMALL, Mode.BASE.canvas: Mode.BASE}


def page_block_id(page_id: int, mode: Mode) -> str:
    return f"{PAGE_BLOCK_PREFIX}{page_id}-{mode.value}"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG header, or None when `data` is not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", data[16:24])


def block_mode(block: dict[str, Any]) -> Mode | None:
    """The mode of an image block: from optimem's block id, else from the PNG's canvas."""
    bid = str(block.get("id") or "")
    if bid.startswith(PAGE_BLOCK_PREFIX):
        try:
            return Mode.parse(bid.rsplit("-", 1)[1])
        except Exception:
            return None
    data = block.get("base64") or block.get("data")
    if not isinstance(data, str):
        return None
    try:
        size = png_size(base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4)))
    except (binascii.Error, ValueError):
        return None
    if size is None:
        return None
    return _BY_CANVAS.get(max(size), Mode.LARGE)


class PageTokenCounter:
    """A LangChain token counter that prices page images as the model really sees them.

    `count_tokens_approximately` charges a flat 85 tokens for any image; a page of optical
    memory costs its mode's positions (Tiny 73 … Large 421 for DeepSeek-OCR, or a provider's
    image rule with `consumer`). Text is counted with tiktoken. Usable wherever LangChain
    takes a `token_counter` (`trim_messages`, `SummarizationMiddleware`, your own trigger).

    Args:
        memory: The memory whose backend prices pages.
        consumer: A name from `optimem.aging.pricing.CONSUMERS` to price pages by that provider's
            image rule instead of the backend's positions.
        unknown_image_tokens: What an image that is not a page costs (optimem cannot know).
    """

    def __init__(
        self, memory: OpticalMemory, *, consumer: str | None = None, unknown_image_tokens: int = 85
    ) -> None:
        self.pricing = Pricing(memory.backend, consumer, memory.encoding)
        self.unknown_image_tokens = unknown_image_tokens

    def __call__(self, messages: Iterable[Any]) -> int:
        return sum(self.message(m) for m in convert_to_messages(list(messages)))

    def message(self, message: BaseMessage) -> int:
        """Tokens of one message: its text and images, and an assistant's tool calls."""
        total = 0
        content = message.content
        if isinstance(content, str):
            total += self.pricing.text(content)
        else:
            for block in content:
                if isinstance(block, str):
                    total += self.pricing.text(block)
                elif block.get("type") == "text":
                    total += self.pricing.text(str(block.get("text", "")))
                elif block.get("type") in ("image", "image_url"):
                    mode = block_mode(block)
                    total += self.pricing.image(mode) if mode else self.unknown_image_tokens
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                total += self.pricing.text(f"{call.get('name')} {json.dumps(call.get('args', {}))}")
        return total
