"""optimem as an MCP server: the memory's tools and page resources for any MCP client.

Built on the official `mcp` SDK (extra ``mcp``) over the same library API as the REST
service, with the same keys file and tenants. Importing this package needs no SDK; building a
server does (`create_server`), and `optimem mcp` runs one over stdio or streamable HTTP.
"""

from __future__ import annotations

from typing import Any

__all__ = ["McpConfig", "create_server"]

INSTALL_HINT = "the MCP server needs its extra: pip install 'optimem[mcp]'"


def __getattr__(name: str) -> Any:
    if name in ("McpConfig", "create_server"):
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
