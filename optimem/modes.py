"""DeepSeek-OCR resolution modes (the aging ladder) and the positions each costs.

A page is typeset once at its creation mode; aging moves it down the ladder
Gundam → Large → Base → Small → Tiny by resizing the image, so the text stays and blurs
while the positions it costs the model fall.
"""

from __future__ import annotations

import enum

from .errors import InputError


def view_positions(grid_h: int, grid_w: int) -> int:
    """Positions one view costs DeepSeek-OCR: a row of `grid_w` tokens plus a newline, per
    row, and one separator (h·(w+1)+1, as its own preprocessing lays them out)."""
    return grid_h * (grid_w + 1) + 1


def gundam_positions(tile_rows: int, tile_cols: int) -> int:
    """Positions of Gundam: the 1024 global view (16×16 tokens) plus 640 tiles, 10×10 each,
    laid out as one grid with a newline per row."""
    return view_positions(16, 16) + tile_rows * 10 * (tile_cols * 10 + 1)


class Mode(enum.StrEnum):
    """A resolution a page is kept at, best first. Values are the stored names."""

    GUNDAM = "gundam"
    LARGE = "large"
    BASE = "base"
    SMALL = "small"
    TINY = "tiny"

    @property
    def canvas(self) -> int:
        """Side of the square page image at this mode, in pixels."""
        return _CANVAS[self]

    @property
    def nominal_tokens(self) -> int:
        """Vision tokens the DeepSeek-OCR paper quotes for this mode."""
        return _NOMINAL[self]

    @property
    def positions(self) -> int:
        """Decoder positions this mode really costs, newline and separator tokens included."""
        return _POSITIONS[self]

    @property
    def rank(self) -> int:
        """0 for the sharpest mode, growing as pages age."""
        return LADDER.index(self)

    def older(self) -> Mode | None:
        """The next mode down the ladder, or None at the bottom."""
        i = self.rank + 1
        return LADDER[i] if i < len(LADDER) else None

    def sharper(self) -> Mode | None:
        """The next mode up the ladder, or None at the top."""
        return LADDER[self.rank - 1] if self.rank > 0 else None

    @classmethod
    def parse(cls, value: str | Mode) -> Mode:
        """Accept a Mode or its name in any case ("Tiny", "tiny", "TINY")."""
        if isinstance(value, Mode):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise InputError(f"unknown mode {value!r}; choose one of {names}") from None


LADDER: tuple[Mode, ...] = (Mode.GUNDAM, Mode.LARGE, Mode.BASE, Mode.SMALL, Mode.TINY)

# Gundam on a square page: 1024 global view + 2×2 tiles of 640, so the page is 1280 px.
GUNDAM_TILES = (2, 2)
_CANVAS = {Mode.GUNDAM: 1280, Mode.LARGE: 1280, Mode.BASE: 1024, Mode.SMALL: 640, Mode.TINY: 512}
_NOMINAL = {
    Mode.GUNDAM: 256 + 100 * GUNDAM_TILES[0] * GUNDAM_TILES[1],
    Mode.LARGE: 400,
    Mode.BASE: 256,
    Mode.SMALL: 100,
    Mode.TINY: 64,
}
_POSITIONS = {
    Mode.GUNDAM: gundam_positions(*GUNDAM_TILES),
    Mode.LARGE: view_positions(20, 20),
    Mode.BASE: view_positions(16, 16),
    Mode.SMALL: view_positions(10, 10),
    Mode.TINY: view_positions(8, 8),
}


def mode_positions(mode: Mode) -> int:
    """The default page cost: DeepSeek-OCR's positions for the mode."""
    return mode.positions
