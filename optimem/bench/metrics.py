"""Benchmark arithmetic as pure functions: answer survival, savings, windows, image tokens.

No I/O and no memory here, so every figure the benchmark reports can be checked by hand
(tests/bench/test_metrics.py does).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from rapidfuzz import fuzz

from ..metrics import fidelity
from ..modes import Mode

#: Share of an answer's characters that must match (fuzzy) for it to count as found.
ANSWER_THRESHOLD = 0.9

_WS = re.compile(r"\s+")
_EDGE_PUNCT = " \t\n.,;:!?\"'`()[]{}«»“”‘’"
_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-"})


def normalise_answer(text: str) -> str:
    """NFKC, case-folded, typographic quotes and dashes made plain, whitespace collapsed,
    punctuation stripped from both ends."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return _WS.sub(" ", text).strip(_EDGE_PUNCT)


def answer_score(answer: str, text: str) -> float:
    """How well `answer` appears somewhere in `text`, in [0, 1] (1 = found exactly).

    Both sides are normalised; the score is rapidfuzz's partial ratio: the Indel similarity
    2·matches / (len(answer) + len(stretch)) of the answer to the best-aligned stretch of
    the text (about the answer's length).
    """
    a, t = normalise_answer(answer), normalise_answer(text)
    if not a or not t:
        return 0.0
    if a in t:
        return 1.0
    return fuzz.partial_ratio(a, t) / 100.0


def answer_found(answer: str, text: str, threshold: float = ANSWER_THRESHOLD) -> bool:
    """True when the normalised answer matches a stretch of the text at ≥ `threshold`.

    Short answers must match exactly: one wrong character in ``OPS-4821`` scores 0.875.
    """
    return answer_score(answer, text) >= threshold


_WORD = re.compile(r"\w+")


def answer_words(text: str) -> list[str]:
    """The normalised words of `text` (NFKC, case-folded, punctuation dropped)."""
    return _WORD.findall(normalise_answer(text))


def answer_exact(answer: str, text: str) -> bool:
    """True when the answer's normalised words appear in `text`'s as one unbroken sequence.

    The strict test: "K-200A" is not found in "K-2004", nor "near a park" in "near park".
    """
    a, t = answer_words(answer), answer_words(text)
    if not a:
        return False
    n = len(a)
    return any(t[i : i + n] == a for i in range(len(t) - n + 1) if t[i] == a[0])


def share(hits: int, total: int) -> float | None:
    """hits ÷ total, or None when there is nothing to count (never a misleading 0 or 1)."""
    return hits / total if total else None


def savings(text_tokens: int, seen_tokens: int) -> float:
    """How many times fewer tokens the model sees than the full history: text ÷ seen."""
    if seen_tokens <= 0:
        return float("inf") if text_tokens else 1.0
    return text_tokens / seen_tokens


def compression(text_tokens: int, positions: int) -> float:
    """Text tokens a page holds ÷ the positions (or image tokens) it costs."""
    return text_tokens / positions if positions else 0.0


def window_start(token_counts: Sequence[int], budget: int) -> int:
    """Index of the oldest turn a sliding window of `budget` tokens keeps.

    The window keeps the newest turns while their text fits; the turns before the returned
    index are dropped. A single newest turn larger than the budget is dropped too (the
    window then holds nothing), so the window never exceeds its budget.
    """
    total = 0
    for i in range(len(token_counts) - 1, -1, -1):
        total += token_counts[i]
        if total > budget:
            return i + 1
    return 0


def window_series(token_counts: Sequence[int], budget: int) -> list[int]:
    """Tokens a sliding window of `budget` holds after each turn of the conversation."""
    out = []
    for n in range(1, len(token_counts) + 1):
        counts = token_counts[:n]
        out.append(sum(counts[window_start(counts, budget) :]))
    return out


def mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return sum(vals) / len(vals) if vals else None


#: Buckets of "turns added after the page's last turn" for fidelity against age.
AGE_EDGES: tuple[int, ...] = (0, 10, 25, 50, 100, 200, 400)


def age_bucket(turns_since: int, edges: Sequence[int] = AGE_EDGES) -> str:
    """The label of the age bucket holding `turns_since`, e.g. ``"10-24"`` or ``"400+"``."""
    if turns_since < edges[0]:
        raise ValueError("age must be ≥ 0")
    for lo, hi in pairwise(edges):
        if lo <= turns_since < hi:
            return f"{lo}-{hi - 1}"
    return f"{edges[-1]}+"


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
    """What one page kept at `mode` costs `consumer`'s model in context tokens."""
    if consumer == "deepseek-ocr":
        return mode.positions  # Gundam and Large share a canvas but not a price
    c = CONSUMERS[consumer]
    return c.tokens(mode.canvas, mode.canvas)


# ---------------------------------------------------------------------------------------------
# The DeepSeek-OCR paper's Fox results (Table 2: 100 English pages, text tokens per page
# 600–1300), drawn beside our own points and always labelled as the paper's.


@dataclass(frozen=True)
class PaperPoint:
    mode: str
    precision: float
    compression: float
    text_tokens: str


PAPER_FOX: tuple[PaperPoint, ...] = (
    PaperPoint("tiny", 0.965, 10.5, "600-700"),
    PaperPoint("tiny", 0.838, 13.2, "800-900"),
    PaperPoint("tiny", 0.793, 16.5, "1000-1100"),
    PaperPoint("tiny", 0.591, 19.7, "1200-1300"),
    PaperPoint("small", 0.985, 6.7, "600-700"),
    PaperPoint("small", 0.968, 8.5, "800-900"),
    PaperPoint("small", 0.915, 10.6, "1000-1100"),
    PaperPoint("small", 0.871, 12.6, "1200-1300"),
)
PAPER_SOURCE = "DeepSeek-OCR paper (arXiv 2510.18234), Table 2, Fox benchmark, decoder DeepSeek-OCR"

__all__ = [
    "ANSWER_THRESHOLD",
    "CONSUMERS",
    "PAPER_FOX",
    "Consumer",
    "age_bucket",
    "answer_exact",
    "answer_found",
    "answer_score",
    "answer_words",
    "compression",
    "fidelity",
    "normalise_answer",
    "page_tokens",
    "savings",
    "share",
    "window_series",
    "window_start",
]
