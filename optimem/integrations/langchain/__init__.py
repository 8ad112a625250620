"""Optical memory for LangChain 1.x agents: middleware, a recall tool, a chat-history adapter.

```python
from langchain.agents import create_agent
from optimem import OpticalMemory
from optimem.integrations.langchain import OpticalMemoryMiddleware

memory = OpticalMemoryMiddleware(memory=OpticalMemory("memory.db"), trigger=("tokens", 4000))
agent = create_agent(model, tools=[...], middleware=[memory], checkpointer=saver)
```

This package is the only part of optimem that imports LangChain (``pip install
'optimem[langchain]'``).
"""

from __future__ import annotations

try:
    import langchain.agents  # noqa: F401
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "optimem.integrations.langchain needs LangChain 1.x: pip install 'optimem[langchain]'"
    ) from exc

from .counting import PageTokenCounter
from .history import OpticalChatMessageHistory
from .middleware import OpticalMemoryMiddleware
from .recall_tool import make_recall_tool

__all__ = [
    "OpticalChatMessageHistory",
    "OpticalMemoryMiddleware",
    "PageTokenCounter",
    "make_recall_tool",
]
