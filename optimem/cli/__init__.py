"""The `optimem` command: one module per command group (memory, bench, serve, worker, mcp)."""

from .main import main

__all__ = ["main"]
