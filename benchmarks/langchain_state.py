"""How the LangChain graph state and what the model receives evolve over a long thread.

    python benchmarks/langchain_state.py [--budget 2000] [--every 6] [--out out/langchain_state.json]

Replays the user turns of the chat that ships with optimem (the assistant's answers are the
chat's own, through RecordingChatModel: no LLM runs here) through `create_agent` with
`OpticalMemoryMiddleware.for_budget(BUDGET)`, and after each turn records the messages kept in
the graph state, their tokens, and the tokens the model received (kept messages + page images
priced at their mode, DeepSeek-OCR positions). Pages are shown as images, so nothing here is
read by OCR and no figure depends on a decoder: the `cpu` backend only prices pages.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from importlib.resources import files
from pathlib import Path

from langchain.agents import create_agent
from langchain.agents.middleware import wrap_model_call
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from optimem import OpticalMemory
from optimem.integrations.langchain import OpticalMemoryMiddleware, PageTokenCounter
from optimem.integrations.langchain.middleware import recommended_settings
from optimem.integrations.langchain.testing import RecordingChatModel
from optimem.turns import load_chat


def replay(budget: int) -> list[dict]:
    turns = [t for t in load_chat(str(files("optimem.data") / "default_chat.json")) if t["role"] != "system"]
    user = [t["content"] for t in turns if t["role"] == "user"]
    replies = iter([t["content"] for t in turns if t["role"] == "assistant"])
    model = RecordingChatModel(reply=lambda messages, i: next(replies, "ok"))
    folder = Path(tempfile.mkdtemp(prefix="optimem-state-"))
    policy = recommended_settings(budget)["policy"]  # as for_budget sets it, but never decoding
    memory = OpticalMemory(folder / "memory.db", backend="cpu", policy=policy, decode="lazy")
    optical = OpticalMemoryMiddleware.for_budget(budget, memory=memory)
    counter = PageTokenCounter(optical.memory)
    received: list[int] = []

    @wrap_model_call
    def measure(request, handler):  # inside the optical middleware: sees what the model gets
        received.append(counter(request.messages))
        return handler(request)

    agent = create_agent(model, middleware=[optical, measure], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "long"}}
    rows = []
    for i, text in enumerate(user, 1):
        agent.invoke({"messages": [HumanMessage(text)]}, config)
        state = agent.get_state(config).values
        memory = state.get("optical_memory", {})
        rows.append(
            {
                "user_turn": i,
                "state_messages": len(state["messages"]),
                "state_tokens": counter(state["messages"]),
                "model_received": received[-1],
                "pages": len(memory.get("page_ids", [])),
                "turns_paged": memory.get("turns", 0),
            }
        )
    optical.memory.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument("--every", type=int, default=6, help="print every Nth user turn")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = replay(args.budget)
    print(f"for_budget({args.budget}): state after each user turn of the embedded chat")
    print("| user turn | messages in the state | their tokens | the model received | pages | turns paged |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["user_turn"] % args.every == 0 or r["user_turn"] == len(rows):
            print(
                f"| {r['user_turn']} | {r['state_messages']} | {r['state_tokens']:,} | {r['model_received']:,} "
                f"| {r['pages']} | {r['turns_paged']} |"
            )
    print(f"most the model received: {max(r['model_received'] for r in rows):,} (budget {args.budget:,})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"budget": args.budget, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
