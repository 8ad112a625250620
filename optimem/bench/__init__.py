"""The token-savings benchmark: replay chats through optical memory and its baselines.

datasets (load chats) → replay → score → aggregate, driven by runner; report writes schema-checked
JSON, text (table, markdown) and plots;
metrics holds the pure arithmetic. `optimem bench` and `optimem demo` are in `cli`.
"""

from __future__ import annotations

from .config import SCHEMA_ID, BenchConfig
from .datasets import Chat, ChatTurn, Question, load, load_default, load_many
from .runner import run

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
