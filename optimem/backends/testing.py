"""TestDoubleBackend: a named test double that "reads" a page from its known layout.

It never looks at pixels, so it is only for fast tests of plumbing (storage, policies, CLI
wiring). It must never produce a fidelity or speed figure: every report that names a
backend refuses it (see `optimem.bench`).
"""

from __future__ import annotations

from .base import Backend, Capabilities, Decoded, PageInput


class TestDoubleBackend(Backend):
    """Returns the text the layout says is on the page. Not an OCR engine."""

    __test__ = False  # not a pytest class
    name = "test-double"
    capabilities = Capabilities(reads_pixels=False, reads_mode=False, in_processes=True)

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls = 0

    def decode(self, page: PageInput) -> Decoded:
        self.calls += 1
        if self.fail:
            from ..errors import BackendError

            raise BackendError("test double asked to fail")
        lines = tuple(line.text for line in page.lines)
        return Decoded("\n".join(lines), 1.0, self.name, 0.0, lines)
