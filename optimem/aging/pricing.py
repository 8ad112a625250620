"""One cost authority: what a consumer's model pays to see pages and text in its context.

`Pricing` is used by compress's budget check, the aging policies, `stats()`, `context()` and
the integrations, so every number a user sees about tokens comes from one place. Page images
are priced by the backend's own positions (what DeepSeek-OCR's decoder sees) or, for a named
consumer, by the image-token rule its provider publishes (`CONSUMERS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..errors import InputError
from ..modes import Mode
from ..tokens import DEFAULT_ENCODING, count_tokens

if TYPE_CHECKING:
    from ..backends.base import Backend


# ---------------------------------------------------------------------------------------------
# Image tokens per consumer: what one page image costs the model that reads the context.


@dataclass(frozen=True)
class Consumer:
    """A model family that reads page images, and the token rule its provider publishes."""

    name: str
    label: str
    rule: str
    source: str
    tokens: Callable[[int, int], int]
    """Tokens for an image of (width, height) pixels."""


def deepseek_ocr_tokens(width: int, height: int) -> int:
    """DeepSeek-OCR decoder positions of a square page at the mode with that canvas.

    Rule: one view of an h×w token grid costs h·(w+1)+1 positions (a newline per row and a
    separator), from DeepSeek-OCR's own preprocessing; see `optimem.modes`. The canvas picks
    the mode (512 Tiny, 640 Small, 1024 Base, 1280 Large; Gundam is priced by `page_tokens`).
    """
    side = max(width, height)
    by_canvas = {Mode.TINY.canvas: Mode.TINY, Mode.SMALL.canvas: Mode.SMALL, Mode.BASE.canvas: Mode.BASE}
    mode = by_canvas.get(side, Mode.LARGE)
    return mode.positions


def openai_tile_tokens(width: int, height: int) -> int:
    """OpenAI high detail (GPT-4o, GPT-4o-mini, o1, o3 ...): 85 + 170 per 512 px tile.

    Rule (platform.openai.com/docs/guides/images-vision, "Calculating costs"): scale to fit
    within 2048×2048, then scale so the shortest side is 768 px, count the 512 px tiles that
    cover the image, 170 tokens each, plus 85. OpenAI's worked examples only ever scale
    *down* (1024×1024 → 768×768 → 4 tiles → 765), and images are not enlarged, so a page
    whose shortest side is already ≤768 keeps its size (512×512 → 1 tile → 255).
    """
    w, h = float(width), float(height)
    if max(w, h) > 2048:
        s = 2048 / max(w, h)
        w, h = w * s, h * s
    if min(w, h) > 768:
        s = 768 / min(w, h)
        w, h = w * s, h * s
    tiles = math.ceil(round(w) / 512) * math.ceil(round(h) / 512)
    return 85 + 170 * tiles


def openai_patch_tokens(width: int, height: int) -> int:
    """OpenAI patch models (GPT-4.1, GPT-4.1-mini/nano, o4-mini): one token per 32 px patch.

    Rule (platform.openai.com/docs/guides/images-vision, "Calculating costs", patch-based
    models): patches of 32×32 covering the image, capped at 1536 (the image is scaled down
    until it fits). Counts context tokens of GPT-4.1; mini and nano bill 1.62× and 2.46× of
    this, which does not change what fits in context.
    """
    w, h = float(width), float(height)
    cap = 1536
    if math.ceil(w / 32) * math.ceil(h / 32) > cap:
        s = math.sqrt(cap * 32 * 32 / (w * h))
        w, h = w * s, h * s
        # then scale again so the width is a whole number of patches, as OpenAI describes
        s2 = math.floor(w / 32) / (w / 32)
        w, h = w * s2, h * s2
    return min(cap, math.ceil(w / 32) * math.ceil(h / 32))


def anthropic_tokens(width: int, height: int) -> int:
    """Anthropic Claude: tokens ≈ width · height / 750.

    Rule (docs.anthropic.com/en/docs/build-with-claude/vision, "Calculate image costs"): an
    image whose long edge exceeds 1568 px or that would cost more than ~1,600 tokens is first
    scaled down, keeping its aspect ratio, until it fits (the docs' table gives 1092×1092 for
    a square image).
    """
    w, h = float(width), float(height)
    s = min(1.0, 1568 / max(w, h), math.sqrt(1600 * 750 / (w * h)))
    w, h = math.floor(w * s), math.floor(h * s)
    return math.ceil(w * h / 750)


def gemini_tokens(width: int, height: int) -> int:
    """Google Gemini (2.0 and later): 258 tokens per 768 px tile.

    Rule (ai.google.dev/gemini-api/docs/tokens, "Multimodal tokens"): an image with both
    sides ≤ 384 px costs 258 tokens; larger images are cropped and scaled into tiles of
    768×768 px, 258 tokens each (counted here as ⌈w/768⌉·⌈h/768⌉ tiles).
    """
    if width <= 384 and height <= 384:
        return 258
    return math.ceil(width / 768) * math.ceil(height / 768) * 258


def qwen25_vl_tokens(width: int, height: int) -> int:
    """Qwen2.5-VL: one token per 28×28 px after `smart_resize`.

    Rule (Qwen2.5-VL model card and `Qwen2VLImageProcessor.smart_resize` in transformers):
    each side is rounded to a multiple of 28 (14 px patches merged 2×2), the pixel count kept
    within [min_pixels, max_pixels] = [56·56, 12,845,056] (the released preprocessor config);
    tokens = (h/28)·(w/28), not counting the two vision start/end markers.
    """
    factor, min_px, max_px = 28, 56 * 56, 12_845_056
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_px:
        beta = math.sqrt(height * width / max_px)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_px:
        beta = math.sqrt(min_px / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return (h_bar // factor) * (w_bar // factor)


CONSUMERS: dict[str, Consumer] = {
    c.name: c
    for c in (
        Consumer(
            "deepseek-ocr",
            "DeepSeek-OCR positions",
            "h·(w+1)+1 decoder positions per view (Tiny 73, Small 111, Base 273, Large 421, Gundam 2x2 693)",
            "DeepSeek-OCR (arXiv 2510.18234) preprocessing; optimem.modes",
            deepseek_ocr_tokens,
        ),
        Consumer(
            "openai-tiles",
            "OpenAI GPT-4o high detail",
            "fit 2048, shortest side 768 (down only), 85 + 170 per 512 px tile",
            "https://platform.openai.com/docs/guides/images-vision#calculating-costs",
            openai_tile_tokens,
        ),
        Consumer(
            "openai-patches",
            "OpenAI GPT-4.1 (32 px patches)",
            "one token per 32x32 patch, at most 1536",
            "https://platform.openai.com/docs/guides/images-vision#calculating-costs",
            openai_patch_tokens,
        ),
        Consumer(
            "anthropic",
            "Anthropic Claude",
            "width·height/750 after scaling to ≤1568 px and ≤~1600 tokens",
            "https://docs.anthropic.com/en/docs/build-with-claude/vision#calculate-image-costs",
            anthropic_tokens,
        ),
        Consumer(
            "gemini",
            "Google Gemini",
            "258 if both sides ≤384 px, else 258 per 768 px tile",
            "https://ai.google.dev/gemini-api/docs/tokens#multimodal-tokens",
            gemini_tokens,
        ),
        Consumer(
            "qwen2.5-vl",
            "Qwen2.5-VL",
            "one token per 28x28 px after smart_resize",
            "https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct (smart_resize)",
            qwen25_vl_tokens,
        ),
    )
}


def page_tokens(consumer: str, mode: Mode) -> int:
    """What one page image kept at `mode` costs `consumer`'s model in context tokens."""
    if consumer == "deepseek-ocr":
        return mode.positions  # Gundam and Large share a canvas but not a price
    try:
        c = CONSUMERS[consumer]
    except KeyError:
        raise InputError(f"unknown consumer {consumer!r}; choose one of {', '.join(CONSUMERS)}") from None
    return c.tokens(mode.canvas, mode.canvas)


class _PagedLike(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def number(self) -> int: ...
    @property
    def turn_ids(self) -> tuple[int, ...]: ...
    @property
    def last_turn_seq(self) -> int: ...
    @property
    def mode(self) -> Mode: ...


def page_caption(page: _PagedLike) -> str:
    """The line of text shown with a page image: the page's and its turns' numbers in the
    session (what a person follows), and the page id the recall tools take. It names no mode,
    so its price never changes as the page ages (the policy can treat it as a fixed cost)."""
    first = page.last_turn_seq - len(page.turn_ids) + 1
    turns = f"turn {first}" if first == page.last_turn_seq else f"turns {first}-{page.last_turn_seq}"
    return f"[memory page {page.number} (id {page.id}): {turns}]"


class Pricing:
    """Prices what one consumer's model sees: page images (with their captions) and text.

    Args:
        backend: The OCR backend (or its class: pricing loads no engine); its `positions(mode)`
            is the default price of a page image
            (the model it stands for, e.g. DeepSeek-OCR 2's 833 / 257 / 145).
        consumer: A name from `CONSUMERS` to price page images by that provider's rule
            instead; ``None`` (default) uses the backend's positions.
        encoding: tiktoken encoding for text.
    """

    def __init__(
        self, backend: Backend | type[Backend], consumer: str | None = None, encoding: str = DEFAULT_ENCODING
    ) -> None:
        if consumer is not None and consumer not in CONSUMERS:
            raise InputError(f"unknown consumer {consumer!r}; choose one of {', '.join(CONSUMERS)}")
        self.backend = backend
        self.consumer = consumer
        self.encoding = encoding

    def image(self, mode: Mode) -> int:
        """Tokens of one page image kept at `mode`, without its caption."""
        if self.consumer is None:
            return self.backend.positions(mode)
        return page_tokens(self.consumer, mode)

    def text(self, text: str) -> int:
        """Tokens of `text` as the model reads it."""
        return count_tokens(text, self.encoding)

    def caption(self, page: _PagedLike) -> int:
        """Tokens of the caption shown with a page image (the same at every mode)."""
        return self.text(page_caption(page))

    def page(self, page: _PagedLike, mode: Mode | None = None) -> int:
        """A page image at `mode` (default: its current mode) plus its caption."""
        return self.image(mode or page.mode) + self.caption(page)
