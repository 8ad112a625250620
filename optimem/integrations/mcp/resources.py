"""Page resources: ``optimem://sessions/{session}/pages/{page}.png`` (the image at its current
mode) and ``….txt`` (its recalled text), for clients that attach pages rather than call tools."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

from ...errors import InputError
from .errors import guarded
from .tenancy import Tenancy

PNG_URI = "optimem://sessions/{session}/pages/{page}.png"
TEXT_URI = "optimem://sessions/{session}/pages/{page}.txt"


def page_number(page: str) -> int:
    if not page.isascii() or not page.isdigit() or int(page) < 1:
        raise InputError(f"page must be a positive page id, got {page!r}")
    return int(page)


def register(server: MCPServer, tenancy: Tenancy) -> None:
    guard = guarded(lambda: tenancy.tenant().prefix, resource=True)

    @server.resource(PNG_URI, name="page_image", mime_type="image/png")
    @guard
    async def page_image(session: str, page: str) -> bytes:
        """A memory page's image at its current mode (PNG)."""
        s = await tenancy.sessions().existing(session)
        return await s.apage_png(page_number(page))

    @server.resource(TEXT_URI, name="page_text", mime_type="text/plain")
    @guard
    async def page_text(session: str, page: str) -> str:
        """A memory page read back as text (OCR on first read); lines that did not pass their
        stored check start with [?]."""
        s = await tenancy.sessions().existing(session)
        return (await s.arecall_page(page_number(page))).marked_text
