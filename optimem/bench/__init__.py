"""The token-savings benchmark: replay chats through optical memory and its baselines.

datasets (load chats) → runner (replay, score) → report (table, JSON, markdown, plots);
metrics holds the pure arithmetic. `optimem bench` and `optimem demo` are in `cli`.
"""

from __future__ import annotations

from .datasets import Chat, ChatTurn, Question, load, load_default, load_many
from .runner import SCHEMA_ID, BenchConfig, run

__all__ = [
    "SCHEMA_ID",
    "BenchConfig",
    "Chat",
    "ChatTurn",
    "Question",
    "load",
    "load_default",
    "load_many",
    "run",
]
