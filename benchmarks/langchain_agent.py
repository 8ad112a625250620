"""Replay a LoCoMo conversation through a LangChain agent with optical memory; table + JSON.

Per model call it records the tokens the model received with `OpticalMemoryMiddleware`, with
no middleware (the full history) and with `trim_messages` to the same budget; at the end, how
many answers of the conversation's questions survive in what each one saw, and the size of
the agent's checkpoint with and without the middleware. No LLM exists here: the chat model is
optimem's `RecordingChatModel`, which answers with the conversation's own next turn, so the
replay is exactly the recorded chat.

    python benchmarks/langchain_agent.py --chat ../shared/data/locomo/41.json --turns 500
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.utils import trim_messages
from langgraph.checkpoint.sqlite import SqliteSaver

from optimem import OpticalMemory
from optimem.bench.datasets import load
from optimem.bench.metrics import answer_found
from optimem.integrations.langchain import OpticalMemoryMiddleware, PageTokenCounter
from optimem.integrations.langchain.counting import block_mode
from optimem.integrations.langchain.testing import RecordingChatModel

#: The LoCoMo sample beside the checkout (`../shared/data/locomo`).
LOCOMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo"
MACHINE = "2 vCPUs of an AMD EPYC, 24 GiB, no GPU"


def exchanges(turns):
    """(user turns, reply text) pairs: consecutive user turns go in one call, the assistant's
    consecutive turns form its reply."""
    out, users, replies = [], [], []
    for t in turns:
        if t.role == "user":
            if replies:
                out.append((users, "\n\n".join(replies)))
                users, replies = [], []
            users.append(t)
        else:
            replies.append(t.content)
    if users or replies:
        out.append((users, "\n\n".join(replies) or "ok"))
    return out


def checkpoint_bytes(saver: SqliteSaver, config: dict) -> int:
    return len(saver.serde.dumps_typed(saver.get_tuple(config).checkpoint)[1])


def seen_text(messages: list[BaseMessage], session) -> str:
    """What a model could read in `messages`: their text, and each page image's text as the
    memory's decoder reads it back."""
    parts = []
    for m in messages:
        if isinstance(m.content, str):
            parts.append(m.content)
            continue
        for b in m.content:
            if b.get("type") == "text":
                parts.append(b["text"])
            elif b.get("type") == "image" and block_mode(b) is not None:
                page_id = int(str(b["id"]).split("-")[2])
                parts.append(session.recall(page_id))
    return "\n".join(parts)


def run(args: argparse.Namespace) -> dict:
    chat = load(args.chat).limit(args.turns)
    work = Path(tempfile.mkdtemp(prefix="optimem-lc-bench-"))
    mem = OpticalMemory(
        work / "memory.db",
        backend=args.backend,
        # pages and paged-out turns get what the kept messages leave at most (less the header)
        policy=f"budget:{args.budget - args.trigger - 100}",
        keep_recent_turns=0,
    )
    counter = PageTokenCounter(mem)
    script = {"reply": "ok"}

    def model():
        return RecordingChatModel(reply=lambda messages, i: script["reply"])

    optical_model, full_model = model(), model()
    conns = [sqlite3.connect(work / f"ckpt-{n}.db", check_same_thread=False) for n in ("optical", "full")]
    savers = [SqliteSaver(c) for c in conns]
    middleware = OpticalMemoryMiddleware(
        memory=mem,
        trigger=("tokens", args.trigger),
        keep=("messages", args.keep),
        budget_tokens=args.budget,
    )
    optical = create_agent(optical_model, middleware=[middleware], checkpointer=savers[0])
    full = create_agent(full_model, checkpointer=savers[1])
    config = {"configurable": {"thread_id": chat.name}}
    history: list[BaseMessage] = []
    rows, seconds = [], []
    for users, reply in exchanges(chat.turns):
        if not users:
            continue  # the assistant speaks first: nothing for the agent to answer
        script["reply"] = reply
        msgs = [HumanMessage(t.content, name=t.name) for t in users]
        history += msgs
        start = time.perf_counter()
        optical.invoke({"messages": msgs}, config)
        seconds.append(time.perf_counter() - start)
        full.invoke({"messages": msgs}, config)
        trimmed = trim_messages(
            history, max_tokens=args.budget, token_counter=counter, strategy="last", start_on="human"
        )
        rows.append(
            {
                "turns": len(history),
                "optical": counter(optical_model.calls[-1]),
                "full": counter(full_model.calls[-1]),
                "trim": counter(trimmed),
            }
        )
        history.append(AIMessage(reply))
    mem.wait()
    session = mem.session(chat.name)
    last_optical = optical_model.calls[-1]
    trimmed = trim_messages(
        history, max_tokens=args.budget, token_counter=counter, strategy="last", start_on="human"
    )
    texts = {
        "full": "\n".join(m.text for m in history),
        "trim": "\n".join(m.text for m in trimmed),
        "optical": seen_text(last_optical, session),
    }
    # as in `optimem bench`: the questions whose answer text is in their evidence turns
    by_id = {t.id: t.content for t in chat.turns}
    questions = [
        q
        for q in chat.questions
        if q.answerable and answer_found(q.answer, "\n".join(by_id[e] for e in q.evidence if e in by_id))
    ]
    survive = {k: sum(answer_found(q.answer, v) for q in questions) for k, v in texts.items()}
    stats = session.stats()
    from optimem.aging.pricing import CONSUMERS

    consumers = {c: PageTokenCounter(mem, consumer=c)(last_optical) for c in CONSUMERS}
    result = {
        "chat": chat.name,
        "source": str(args.chat),
        "turns": len(chat.turns),
        "model_calls": len(rows),
        "budget_tokens": args.budget,
        "trigger_tokens": args.trigger,
        "keep_messages": args.keep,
        "decoder": mem.backend.name,
        "machine": MACHINE,
        "python": platform.python_version(),
        "questions": len(questions),
        "answers_survive": survive,
        "final_call": rows[-1],
        "mean_tokens": {
            k: round(sum(r[k] for r in rows) / len(rows), 1) for k in ("optical", "full", "trim")
        },
        "checkpoint_bytes": {
            "optical": checkpoint_bytes(savers[0], config),
            "full": checkpoint_bytes(savers[1], config),
        },
        "final_call_by_consumer": consumers,
        "pages": len(session.pages()),
        "per_mode": {m.value: s.pages for m, s in stats.per_mode.items()},
        "seconds_per_turn_mean": round(sum(seconds) / len(seconds), 3),
        "seconds_per_turn_max": round(max(seconds), 3),
        "calls": rows,
    }
    mem.close()
    for c in conns:
        c.close()
    return result


def table(r: dict) -> str:
    lines = [
        f"LangChain agent replay: {r['chat']} ({r['turns']} turns, {r['model_calls']} model calls), "
        f"budget {r['budget_tokens']:,} tokens, trigger {r['trigger_tokens']:,}, keep {r['keep_messages']} messages",
        f"decoder {r['decoder']}, machine: {r['machine']}; chat model: RecordingChatModel (no LLM)",
        "",
        "  what the model receives             last call  mean/call  answers survive",
        "  ---------------------------------  ---------  ---------  ---------------",
    ]
    names = {
        "full": "no middleware (full history)",
        "trim": f"trim_messages ({r['budget_tokens']:,})",
        "optical": "OpticalMemoryMiddleware",
    }
    q = r["questions"]
    for key, label in names.items():
        s = r["answers_survive"][key]
        lines.append(
            f"  {label:<33}  {r['final_call'][key]:>9,}  {r['mean_tokens'][key]:>9,.0f}  "
            f"{s:>4}/{q} {100 * s / q:5.1f}%"
        )
    cb = r["checkpoint_bytes"]
    lines += [
        "",
        f"  checkpoint after {r['turns']} turns: {cb['optical']:,} bytes with optical memory, "
        f"{cb['full']:,} bytes without",
        f"  pages: {r['pages']} {r['per_mode']}; agent turn with paging: "
        f"{r['seconds_per_turn_mean']:.3f} s mean, {r['seconds_per_turn_max']:.3f} s max",
        "",
        "  the last optical call priced by other models' image rules: "
        + ", ".join(f"{k} {v:,}" for k, v in r["final_call_by_consumer"].items()),
        "",
        "  tokens per model call (every 50 turns)",
        "  turns  optical    full    trim",
    ]
    step = 0
    for row in r["calls"]:
        if row["turns"] >= step:
            lines.append(f"  {row['turns']:>5}  {row['optical']:>7,}  {row['full']:>6,}  {row['trim']:>6,}")
            step = row["turns"] + 50
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chat", default=str(LOCOMO / "41.json"))
    p.add_argument("--turns", type=int, default=500)
    p.add_argument("--budget", type=int, default=2000)
    p.add_argument("--trigger", type=int, default=1000, help="page out when messages reach N tokens")
    p.add_argument("--keep", type=int, default=6)
    p.add_argument("--backend", default="cpu")
    p.add_argument("--out", default="benchmarks/results/langchain_agent")
    p.add_argument("--smoke", action="store_true", help="check the plumbing only; writes no figures")
    args = p.parse_args()
    if args.backend == "test-double" and not args.smoke:
        p.error("the test-double backend is no OCR: it may only run with --smoke (no figures)")
    result = run(args)
    if args.smoke:
        print(table(result))
        print("smoke run: not a measurement, nothing written")
        return
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    text = table(result)
    out.with_suffix(".md").write_text("```\n" + text + "\n```\n")
    print(text)


if __name__ == "__main__":
    main()
