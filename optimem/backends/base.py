"""The one protocol every OCR decoder implements.

Implementing
    Subclass `Backend`, set `name` and `capabilities`, and override `decode` (one page) or
    `decode_many` (a batch): each default calls the other. Override `encode` only when the
    backend has a representation worth storing (DeepSeek-OCR's vision tokens); the default
    stores nothing and decodes from the page image. `fingerprint` names the model and
    settings, so stored representations are never fed to a different model.

Using
    backend = get_backend("tesseract")
    decoded = backend.decode(PageInput(image, mode, lines, font_px))
    decoded.text, decoded.confidence, decoded.lines
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from PIL import Image

from ..layout import LineBox
from ..modes import Mode


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, each flag with the reason it matters."""

    stores_representation: bool = False
    """encode() returns bytes worth keeping (vision embeddings), so recall skips the encoder.
    Paging stores them with each page and re-encodes a page when it ages."""
    batches: bool = False
    """decode_many() is faster per page than decode() in a loop, so background decoding hands
    it every page of a compress at once; otherwise each page is its own task (one failure then
    costs one page, not the batch)."""
    reads_pixels: bool = True
    """False for a test double that reads the known layout: benchmarks and fidelity figures
    refuse it."""
    reads_mode: bool = True
    """decode() depends on the page's mode as well as its image (DeepSeek-OCR tiles a Gundam
    page and views a Large one whole). False where the image and layout alone decide the
    text, so the same image reads alike in any session at any mode: the benchmark then reads
    each distinct image once across a chat's replays (`optimem.bench.shared_reads`)."""
    in_processes: bool = False
    """Several processes may each load the backend and read at once: the CPU engines, whose
    pages then use every core (the benchmark reads ahead in worker processes,
    `optimem.bench.read_ahead`). False for a GPU model, which one process holds."""


@dataclass(frozen=True)
class PageInput:
    """A page as a decoder sees it: the image at its current mode and its layout scaled to it."""

    image: Image.Image
    mode: Mode
    lines: tuple[LineBox, ...] = ()
    font_px: float = 10.0
    """Pixels per em of the text at this image's size (shrinks as the page ages)."""
    has_cjk: bool = False
    representation: bytes | None = None
    """What this backend's encode() returned for the page, if it stores one."""
    checks: tuple[bytes, ...] = ()
    """Per layout line, the digest of its words (`optimem.aids.linecheck`), when the page keeps them:
    a reading whose digest differs was misread somewhere. Empty for pages made without them."""


def lines_subset(page: PageInput, idx: Sequence[int]) -> PageInput:
    """The page with only lines `idx` to read (for a second engine): the same image and size,
    without the line checks, which belong to the whole page's lines."""
    return PageInput(
        image=page.image,
        mode=page.mode,
        lines=tuple(page.lines[i] for i in idx),
        font_px=page.font_px,
        has_cjk=page.has_cjk,
        representation=page.representation,
    )


@dataclass(frozen=True)
class Decoded:
    """Text read back from one page, with the decoder's own confidence in [0, 1]."""

    text: str
    confidence: float
    backend: str
    seconds: float = 0.0
    lines: tuple[str, ...] | None = None
    """One entry per layout line when the backend read line by line, else None."""
    extra: dict = field(default_factory=dict)


class Backend:
    """Base class of OCR decoders. See the module docstring for how to implement one."""

    name: ClassVar[str] = "backend"
    capabilities: Capabilities = Capabilities()
    """Class default; a backend whose options change a flag sets its own on the instance."""

    def fingerprint(self) -> str:
        """Identifies the model and settings whose outputs are interchangeable."""
        return self.name

    def alternates(
        self, page: PageInput, lines: Sequence[int], readings: Sequence[str]
    ) -> dict[int, list[str]]:
        """Other readings of some lines of `page` (first read as `readings`), for proofreading:
        a backend with a second engine reads them again. Default: none."""
        return {}

    @classmethod
    def positions(cls, mode: Mode) -> int:
        """Decoder positions a page at `mode` costs the model this backend stands for.

        The default is DeepSeek-OCR's (v1) count for the mode; a backend whose model sees
        pages differently (DeepSeek-OCR 2: 833 / 257 / 145) overrides it, and budgets and
        stats then count what that model really sees. A classmethod: pricing needs no loaded
        engine or weights.
        """
        return mode.positions

    def encode(self, page: PageInput) -> bytes | None:
        """The representation to store for this page, or None to decode from the image."""
        return None

    def decode(self, page: PageInput) -> Decoded:
        """Read one page back to text."""
        if type(self).decode_many is Backend.decode_many:
            raise NotImplementedError(f"{type(self).__name__} must override decode or decode_many")
        return self.decode_many([page])[0]

    def decode_many(self, pages: Sequence[PageInput]) -> list[Decoded]:
        """Read several pages; backends that batch override this."""
        if type(self).decode is Backend.decode:
            raise NotImplementedError(f"{type(self).__name__} must override decode or decode_many")
        return [self.decode(p) for p in pages]

    def warm_up(self, batch_sizes: Sequence[int] = (1,)) -> float:
        """Pay one-time costs (loading engines and models, compiling, capturing graphs) now for
        these batch sizes, rather than in the first page; returns the seconds spent. Workers and
        `optimem serve` call it before they report ready. Default: nothing to pay."""
        return 0.0

    def close(self) -> None:
        """Release engines and worker processes."""


def timed(fn, *args, **kwargs):
    """(result, seconds) of a call, for the `seconds` field of Decoded."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
