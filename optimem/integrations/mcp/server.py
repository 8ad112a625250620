"""Build the MCP server (`create_server`) over an open `OpticalMemory`, and run it on stdio or HTTP."""

from __future__ import annotations

import signal
from typing import Any

from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from optimem.server.auth import KeysFile
from optimem.server.limits import RateLimiter

from ... import __version__
from ...memory import OpticalMemory
from . import resources, tools
from .config import McpConfig
from .errors import as_result
from .tenancy import KeysVerifier, Tenancy

INSTRUCTIONS = (
    "optimem keeps a long conversation as memory pages: older turns become page images that cost "
    "a fraction of their text tokens. Call remember with new turns (external_id = your message id), "
    "context to see the conversation within a token budget, search to find where something was "
    "said, and recall to read a page back as exact text."
)


class OptimemServer(MCPServer):
    """The SDK's server, answering tool failures in the REST service's words (see `errors`)."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context | None = None
    ) -> CallToolResult | InputRequiredResult:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            result = as_result(exc)
            if result is None:
                raise
            return result


def create_server(memory: OpticalMemory, config: McpConfig) -> MCPServer:
    """The optimem MCP server over `memory` (which the caller opens and closes)."""
    settings = config.settings
    keys = KeysFile(settings.keys) if config.http and settings.keys else None
    auth: dict = {}
    if keys is not None:
        keys.records()  # a broken keys file stops the start, not the first request
        auth = {
            "token_verifier": KeysVerifier(keys),
            # the SDK's bearer check needs an issuer; keys are issued by `optimem keys add`, here
            "auth": AuthSettings(
                issuer_url=AnyHttpUrl(f"http://{settings.host}:{settings.port}"), resource_server_url=None
            ),
        }
    limiter = RateLimiter(settings.rate_per_minute) if config.http else None
    tenancy = Tenancy(memory, config.tenant, limiter)
    server = OptimemServer(
        "optimem",
        title="optimem optical memory",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=settings.log_level.upper(),  # type: ignore[arg-type]
        tools=tools.build(tenancy, config),
        **auth,
    )
    resources.register(server, tenancy)
    if config.http:
        server.custom_route("/healthz", methods=["GET"])(healthz)
    return server


async def healthz(request: Request) -> Response:
    """Liveness for load balancers and tests (no key needed, says nothing about the memory)."""
    return JSONResponse({"status": "ok"})


def run(server: MCPServer, config: McpConfig) -> None:
    """Serve until stdin closes (stdio) or SIGINT/SIGTERM (HTTP: in-flight calls finish first)."""
    if not config.http:
        server.run("stdio")
        return
    import uvicorn

    # uvicorn re-raises SIGTERM once it has shut down gracefully; exiting through Python instead
    # of the default handler lets the caller close the memory (finishing background decodes)
    signal.signal(signal.SIGTERM, _exit)
    settings = config.settings
    app = server.streamable_http_app(host=settings.host, max_request_body_size=settings.max_body_bytes)
    uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            timeout_graceful_shutdown=settings.graceful_timeout,
        )
    ).run()


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)
