"""What `optimem mcp` serves with: its own module, so the server and its tools both read it."""

from __future__ import annotations

from dataclasses import dataclass

from optimem.server.settings import Settings


@dataclass(frozen=True)
class McpConfig:
    """How `optimem mcp` serves: the REST service's settings plus what only MCP needs."""

    settings: Settings
    """Database, backend, policy, decode, keys, host, port and limits, as `optimem serve` reads them."""
    http: bool = False
    """Streamable HTTP at http://host:port/mcp instead of stdio."""
    session: str = "default"
    """The session tools use when the model names none."""
    tenant: str | None = None
    """The tenant of every call without keys (stdio, or HTTP without a keys file); None: the local
    user, who sees every session of the database by its full id."""
    budget_tokens: int = 4000
    """Default budget of the `context` tool."""
