"""A LangChain agent whose older turns become optical memory pages; prints what the model gets.

    bash scripts/install.sh langchain,server        # once: the extras this example needs
    .venv/bin/python examples/langchain_agent.py    # a recording fake model (no LLM needed)
    OPENAI_API_KEY=... .venv/bin/python examples/langchain_agent.py      # or ANTHROPIC_API_KEY=...

It replays the user turns of the chat that ships with optimem through `create_agent` with
`OpticalMemoryMiddleware` and prints, per model call, the conversation's text tokens so far
against the tokens the model really received (recent messages + page images priced by mode).
"""

from __future__ import annotations

import os
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from langchain.agents import create_agent
from langchain.agents.middleware import wrap_model_call
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from optimem import OpticalMemory
from optimem.integrations.langchain import OpticalMemoryMiddleware, PageTokenCounter
from optimem.integrations.langchain.recall_tool import read_page
from optimem.integrations.langchain.testing import RecordingChatModel
from optimem.turns import load_chat

USER_TURNS = int(os.environ.get("OPTIMEM_EXAMPLE_TURNS", "24"))


def chat_model(script: list[str]):
    """A real provider when a key is set, else a fake that answers with the chat's own turns."""
    if os.environ.get("OPENAI_API_KEY"):
        from langchain_openai import ChatOpenAI

        return ChatOpenAI(model="gpt-4.1-mini"), "openai-patches"
    if os.environ.get("ANTHROPIC_API_KEY"):
        from langchain_anthropic import ChatAnthropic

        return ChatAnthropic(model="claude-sonnet-4-5"), "anthropic"
    print("no OPENAI_API_KEY or ANTHROPIC_API_KEY: using RecordingChatModel, a fake that")
    print("answers with the recorded chat's assistant turns (no LLM runs here)\n")
    replies = iter(script)
    return RecordingChatModel(reply=lambda messages, i: next(replies, "ok")), None


def main() -> None:
    turns = [t for t in load_chat(str(files("optimem.data") / "default_chat.json")) if t["role"] != "system"]
    user = [t["content"] for t in turns if t["role"] == "user"][:USER_TURNS]
    script = [t["content"] for t in turns if t["role"] == "assistant"]
    model, consumer = chat_model(script)

    workdir = Path(tempfile.mkdtemp(prefix="optimem-example-"))
    memory = OpticalMemory(workdir / "memory.db", backend="cpu", policy="budget:900", keep_recent_turns=0)
    optical = OpticalMemoryMiddleware(
        memory=memory, trigger=("tokens", 1000), keep=("messages", 6), budget_tokens=2000, consumer=consumer
    )
    counter = PageTokenCounter(memory, consumer=consumer)
    history_tokens = 0

    @wrap_model_call
    def show(request, handler):  # runs inside the optical middleware: sees what the model gets
        pages = sum(
            1
            for m in request.messages
            if isinstance(m.content, list)
            for b in m.content
            if b.get("type") == "image"
        )
        seen = counter(request.messages)
        print(
            f"call: history {history_tokens:>6,} text tokens | model receives {seen:>5,} ({pages} page images)"
        )
        return handler(request)

    agent = create_agent(model, middleware=[optical, show], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "example"}}
    for text in user:
        history_tokens += counter([HumanMessage(text)])
        result = agent.invoke({"messages": [HumanMessage(text)]}, config)
        history_tokens += counter([m for m in result["messages"][-1:] if isinstance(m, AIMessage)])
    memory.wait()
    session = memory.session("example")
    stats = session.stats()
    print(f"\nmemory: {len(session.pages())} pages, {stats.turns} turns paged out of the graph state")
    print(f"checkpoint state: {len(agent.get_state(config).values['messages'])} messages + page ids")
    first = session.pages()[0]
    print(f"\nrecall_memory(page_id={first.id}) reads (decoder {memory.backend.name}):")
    print(read_page(session, first.id)[:400], "...")
    memory.close()


if __name__ == "__main__":
    sys.exit(main())
