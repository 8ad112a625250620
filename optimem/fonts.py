"""Find the fonts pages are typeset in and which characters each can draw.

Latin and code come from the DejaVu fonts inside matplotlib's wheel, CJK from the
`noto-cjk-sans-otc` wheel (or Debian's fonts-noto-cjk), so `pip install optimem` brings all
of them. Knowing each font's character map lets the renderer draw a visible placeholder
instead of tofu.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from PIL import ImageFont

from .errors import RenderError

_SYSTEM_CJK = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto-cjk/NotoSansCJK-Regular.ttc",
)


@dataclass(frozen=True)
class FontFiles:
    sans: Path
    sans_bold: Path
    mono: Path
    cjk: Path | None


@cache
def font_files() -> FontFiles:
    """Locate the bundled fonts; OPTIMEM_CJK_FONT overrides the CJK face."""
    try:
        import matplotlib
    except ImportError as exc:  # a core dependency, but say exactly what is missing
        raise RenderError("matplotlib is needed for its DejaVu fonts: pip install matplotlib") from exc
    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    cjk: Path | None = None
    override = os.environ.get("OPTIMEM_CJK_FONT")
    if override:
        cjk = Path(override)
    else:
        try:
            import noto_cjk_sans_otc

            cjk = Path(str(noto_cjk_sans_otc.FONT_PATH))
        except ImportError:
            cjk = next((Path(p) for p in _SYSTEM_CJK if Path(p).exists()), None)
    return FontFiles(
        sans=ttf / "DejaVuSans.ttf",
        sans_bold=ttf / "DejaVuSans-Bold.ttf",
        mono=ttf / "DejaVuSansMono.ttf",
        cjk=cjk if cjk is not None and cjk.exists() else None,
    )


@cache
def charset(path: Path) -> frozenset[int]:
    """Code points the font at `path` has glyphs for (first face of a collection)."""
    from fontTools.ttLib import TTCollection, TTFont

    if path.suffix.lower() in (".ttc", ".otc"):
        font = TTCollection(str(path), lazy=True).fonts[0]
    else:
        font = TTFont(str(path), lazy=True)
    cmap = font.getBestCmap() or {}
    return frozenset(cmap)


@cache
def load(path: Path, size_px: int) -> ImageFont.FreeTypeFont:
    """A Pillow font of `size_px` pixels per em."""
    return ImageFont.truetype(str(path), size_px)
