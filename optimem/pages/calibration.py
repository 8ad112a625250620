"""How densely to typeset a page for a given backend and mode, from measured calibration.

`scripts/calibrate.py` renders full pages at several font sizes, decodes them with each
backend, and writes `optimem/data/calibration.json`: the densest font at which that
backend still reads ≥97% of the page at the page's creation mode, and for code (monospace
text kept as typed) the densest at which it recalls ≥95% of code words with indentation. Backends without a
measured entry (DeepSeek-OCR has no weights here) use the default backend's figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..modes import Mode
from .typeset import RenderOptions

# Used only when no calibration file is installed: DESIGN §5's measured rapidocr/tesseract
# figures (8 px Latin reads ≥97% on every canvas; CJK needs 12 px).
_FALLBACK = {"latin": 8, "cjk": 12}


@dataclass(frozen=True)
class Density:
    font_px: int
    cjk_font_px: int
    source: str
    """Where the numbers come from: 'calibration.json:<backend>' or 'fallback'."""
    code_font_px: int | None = None
    """Size of monospace lines (code, tool output); None: the Latin size (not calibrated)."""


@cache
def _table() -> dict:
    try:
        raw = resources.files("optimem.data").joinpath("calibration.json").read_text()
    except (FileNotFoundError, ModuleNotFoundError):
        return {}
    return json.loads(raw).get("backends", {})


def density(backend: str, mode: Mode, *, fallback_backend: str = "cpu") -> Density:
    """Font sizes for a page created at `mode` that `backend` reads back at ≥97%."""
    table = _table()
    for name in (backend, fallback_backend):
        modes = table.get(name, {}).get("modes", {})
        entry = modes.get(mode.value) or (modes.get("large") if mode is Mode.GUNDAM else None)
        if entry and "latin" in entry:
            latin = entry["latin"]["font_px"]
            cjk = entry.get("cjk", {}).get("font_px", max(latin, _FALLBACK["cjk"]))
            code = entry.get("code", {}).get("font_px")
            return Density(
                int(latin), int(cjk), f"calibration.json:{name}", int(code) if code is not None else None
            )
    return Density(_FALLBACK["latin"], _FALLBACK["cjk"], "fallback")


def render_options(backend: str, mode: Mode) -> RenderOptions:
    d = density(backend, mode)
    return RenderOptions(
        canvas=mode.canvas, font_px=d.font_px, cjk_font_px=d.cjk_font_px, code_font_px=d.code_font_px
    )
