"""DeepSeek-OCR 2's image budgets and how optimem's modes map onto them. No torch needed.

DeepSeek-OCR 2 has one dynamic mode: a 1024 global view (256 queries) plus 0-6 tiles of 768
(144 each), then one view separator. optimem's ladder maps onto three budgets the processor
offers, so the decoder sees 257 + 144·k → 257 → 145 image positions, not DeepSeek-OCR v1's
64/100/256/400 tiers.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...modes import Mode


@dataclass(frozen=True)
class View:
    """One of the three image budgets DeepSeek-OCR 2's processor offers."""

    name: str
    processor_kwargs: dict
    base_tokens: int
    """Image positions for a global view alone (256 or 144 queries + the view separator)."""
    tiles: bool = False
    """Adds 768 tiles (144 positions each), 2-6 of them chosen by the page's aspect ratio."""


TILED = View("1024 global + 768 tiles", {"crop_to_patches": True}, 257, tiles=True)
GLOBAL_1024 = View("1024 global", {"crop_to_patches": False, "tile_size": 1024}, 257)
GLOBAL_768 = View("768 global", {"crop_to_patches": False, "size": {"height": 768, "width": 768}}, 145)
# `crop_to_patches=False` alone is a trap: the processor then writes 257 placeholders while the
# vision tower returns 145 rows (its global view falls back to the 768 tile size).
VIEWS = (TILED, GLOBAL_1024, GLOBAL_768)

MODE_VIEWS: dict[Mode, View] = {
    Mode.GUNDAM: TILED,  # 1280 page → 1024 global + 2×2 tiles of 768 = 833
    Mode.LARGE: GLOBAL_1024,  # 1280 page read at 1024: 257 (no 1280 view in OCR 2)
    Mode.BASE: GLOBAL_1024,  # 257
    Mode.SMALL: GLOBAL_768,  # 640 page read at 768: 145
    Mode.TINY: GLOBAL_768,  # 512 page read at 768: 145 (the blur of aging stays in the pixels)
}
NATIVE_MODES = frozenset({Mode.GUNDAM, Mode.BASE, Mode.SMALL})


def tile_grid(width: int, height: int, min_tiles: int = 2, max_tiles: int = 6) -> tuple[int, int]:
    """(columns, rows) of 768 tiles the processor cuts a page of this size into; (0, 0) if none."""
    if max(width, height) <= 768:
        return (0, 0)
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        get_optimal_tiled_canvas,
    )

    return get_optimal_tiled_canvas((height, width), (768, 768), min_tiles, max_tiles)


def image_positions(mode: Mode, width: int | None = None, height: int | None = None) -> int:
    """Image positions the decoder sees for a page at `mode` (default: the square mode canvas)."""
    view = MODE_VIEWS[Mode.parse(mode)]
    if not view.tiles:
        return view.base_tokens
    side = Mode.parse(mode).canvas
    cols, rows = tile_grid(width or side, height or side)
    return view.base_tokens + 144 * cols * rows


__all__ = ["MODE_VIEWS", "NATIVE_MODES", "VIEWS", "View", "image_positions", "tile_grid"]
