"""OpticalMemoryMiddleware, the recall tool and the chat-history adapter on real LangChain.

Real `create_agent` graphs with real checkpointers (InMemorySaver, SqliteSaver). No LLM exists
on this machine, so the chat model is `RecordingChatModel`, a fake that answers from a script
and records exactly the messages the provider would receive. Plumbing tests read pages with the
`test-double` backend (it returns the page's layout text, it is no OCR); one end-to-end test
reads pages with the real `cpu` OCR.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import subprocess
import sys
import warnings

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

from optimem import Mode, OpticalMemory
from optimem.backends.testing import TestDoubleBackend
from optimem.integrations.langchain import (
    OpticalChatMessageHistory,
    OpticalMemoryMiddleware,
    PageTokenCounter,
)
from optimem.integrations.langchain.presenting import memory_messages
from optimem.integrations.langchain.testing import RecordingChatModel
from optimem.reading.fidelity import fidelity
from tests.conftest import chat_turns

TEXTS = [text for _, text in chat_turns(40, words=45)]


def image_blocks(messages):
    return [
        b
        for m in messages
        if isinstance(m.content, list)
        for b in m.content
        if isinstance(b, dict) and b.get("type") == "image"
    ]


def make_agent(memory, model=None, *, checkpointer=None, tools=(), **options):
    options = {"trigger": ("tokens", 500), "keep": ("messages", 4), "budget_tokens": 1200, **options}
    middleware = OpticalMemoryMiddleware(memory=memory, **options)
    model = model or RecordingChatModel()
    agent = create_agent(
        model, tools=list(tools), middleware=[middleware], checkpointer=checkpointer or InMemorySaver()
    )
    return agent, model, middleware


def chat(agent, thread, texts, **kwargs):
    config = {"configurable": {"thread_id": thread}}
    for text in texts:
        agent.invoke({"messages": [HumanMessage(text)]}, config, **kwargs)
    return config


@pytest.fixture
def memory(tmp_path):
    mem = OpticalMemory(
        tmp_path / "memory.db", backend="test-double", policy="budget:300", keep_recent_turns=0
    )
    yield mem
    mem.close()


def test_model_sees_pages_and_recent_messages_within_budget(memory):
    agent, model, _ = make_agent(memory)
    config = chat(agent, "t1", TEXTS[:12])
    last = model.calls[-1]
    images = image_blocks(last)
    assert images, "older turns should reach the model as page images"
    assert all(b["mime_type"] == "image/png" and b["base64"].startswith("iVBOR") for b in images)
    assert last[-1].text == TEXTS[11]  # the newest message is there as text
    assert TEXTS[0] not in json.dumps([m.content for m in last])  # the oldest only as a page
    counter = PageTokenCounter(memory)
    assert counter(last) <= 1200
    # a page costs its mode's positions, not count_tokens_approximately's flat 85
    assert counter(last) != count_tokens_approximately(last)
    state = agent.get_state(config).values
    assert state["optical_memory"]["page_ids"]
    kept = state["messages"]  # below the trigger, or just paged down to `keep` (+ the reply)
    assert counter(kept[:-1]) < 500 or len(kept) <= 5
    assert memory.session("t1").stats().turns + len(state["messages"]) == 24  # nothing lost


def test_token_counter_prices_a_page_by_its_mode(memory):
    s = memory.session("c")
    s.add_turns([("user", t) for t in TEXTS[:6]])
    s.compress(flush=True)
    ctx_messages = OpticalMemoryMiddleware(memory=memory)  # the counter lives on it too
    page = s.pages()[0]
    block = {"type": "image", "base64": __import__("base64").b64encode(s.page_png(page.id)).decode()}
    msg = HumanMessage(content=[block])
    assert ctx_messages.token_counter([msg]) == memory.backend.positions(page.mode)
    assert PageTokenCounter(memory, consumer="anthropic")([msg]) != memory.backend.positions(page.mode)


def test_tool_call_pairs_stay_together(memory):
    @tool
    def lookup(ticket: str) -> str:
        """Look a ticket up."""
        return f"ticket {ticket} is owned by the data platform team"

    def reply(messages, i):
        if isinstance(messages[-1], HumanMessage):
            return AIMessage(
                "", tool_calls=[{"name": "lookup", "args": {"ticket": f"OPS-{i}"}, "id": f"c{i}"}]
            )
        return f"done {i}"

    agent, model, _ = make_agent(
        memory, RecordingChatModel(reply=reply), tools=[lookup], keep=("messages", 3)
    )
    config = chat(agent, "tools", TEXTS[:8])
    for call in model.calls:
        for i, m in enumerate(call):
            if isinstance(m, ToolMessage):
                callers = [p for p in call[:i] if isinstance(p, AIMessage) and p.tool_calls]
                assert any(m.tool_call_id in {c["id"] for c in p.tool_calls} for p in callers)
            if isinstance(m, AIMessage) and m.tool_calls:
                later = {x.tool_call_id for x in call[i + 1 :] if isinstance(x, ToolMessage)}
                assert {c["id"] for c in m.tool_calls} <= later
    kept = agent.get_state(config).values["messages"]
    assert not isinstance(kept[0], ToolMessage)
    # the tool calls that were paged are remembered with their arguments
    turns = memory.session("tools").turns()
    assert any(t.metadata.get("tool_calls") for t in turns)
    assert any("[tool call lookup:" in (t.content or "") for t in turns)


def test_recall_tool_reads_a_page_and_answers_a_query(memory):
    asked = {}

    def reply(messages, i):
        last = messages[-1]
        if isinstance(last, ToolMessage):
            asked.setdefault("results", []).append(last.text)
            return "thanks"
        if last.text == "recall page":
            return AIMessage(
                "", tool_calls=[{"name": "recall_memory", "args": {"page_id": asked["page"]}, "id": "r1"}]
            )
        if last.text == "recall query":
            return AIMessage(
                "", tool_calls=[{"name": "recall_memory", "args": {"query": "OPS-4801"}, "id": "r2"}]
            )
        if last.text == "recall turns":
            return AIMessage(
                "", tool_calls=[{"name": "recall_memory", "args": {"turn_ids": asked["turns"]}, "id": "r3"}]
            )
        return "ok"

    agent, model, mw = make_agent(memory, RecordingChatModel(reply=reply), tools=[])
    assert [t.name for t in mw.tools] == ["recall_memory"]
    chat(agent, "r", TEXTS[:12])
    assert [t.name for t in model.bound_tools] == ["recall_memory"]  # registered by the middleware
    memory.wait()
    page = memory.session("r").pages()[0]
    asked["page"] = page.id
    asked["turns"] = list(page.turn_ids[:2])
    chat(agent, "r", ["recall page", "recall query", "recall turns"])
    by_page, by_query, by_turns = asked["results"]
    source = {t.id: t.content for t in memory.session("r").turns()}
    for tid in page.turn_ids[:2]:  # whole turns, as typed (the test double reads the layout)
        assert f"turn {tid}, " in by_turns and source[tid] in by_turns
    first_turn = source[page.turn_ids[0]]
    assert (
        f"memory page {page.id} (turns {page.turn_ids[0]}-{page.turn_ids[-1]}, {page.mode.value}" in by_page
    )
    assert first_turn.split()[2] in by_page and "OPS-4800" in by_page
    assert "Pages matching 'OPS-4801'" in by_query and "OPS-4801" in by_query


def test_threads_and_namespaces_are_separate(memory):
    agent, model, _ = make_agent(memory, namespace="user_id")
    chat(agent, "t", TEXTS[:10], context={"user_id": "alice"})
    assert image_blocks(model.calls[-1])
    n_alice = len(model.calls)
    chat(agent, "other", ["hello from a new thread"], context={"user_id": "alice"})
    # the same thread id under another user (its own checkpointer thread) shares nothing
    bob_agent, bob_model, _ = make_agent(memory, namespace="user_id")
    chat(bob_agent, "t", ["hello from bob"], context={"user_id": "bob"})
    assert memory.sessions(prefix="alice/") == ["alice/t"]
    assert not memory.has_session("bob/t")  # nothing paged for bob yet
    for call in [*model.calls[n_alice:], *bob_model.calls]:
        assert not image_blocks(call)
        assert all("Turn " not in m.text for m in call)


def test_resumed_thread_continues_in_a_new_process(tmp_path):
    db, ckpt = tmp_path / "memory.db", tmp_path / "checkpoints.db"

    def fresh():
        mem = OpticalMemory(db, backend="test-double", policy="budget:300", keep_recent_turns=0)
        conn = sqlite3.connect(ckpt, check_same_thread=False)
        agent, model, _ = make_agent(mem, checkpointer=SqliteSaver(conn))
        return mem, conn, agent, model

    mem, conn, agent, _ = fresh()
    chat(agent, "long", TEXTS[:10])
    pages_before = [p.id for p in mem.session("long").pages()]
    mem.close()
    conn.close()

    mem, conn, agent, model = fresh()
    config = chat(agent, "long", TEXTS[10:12])
    assert pages_before and set(pages_before) <= {p.id for p in mem.session("long").pages()} | set()
    assert image_blocks(model.calls[0]), "the resumed thread sees its earlier pages"
    state = agent.get_state(config).values
    turns = mem.session("long").stats().turns
    assert turns + len(state["messages"]) == 24  # no turn stored twice, none lost
    mem.close()
    conn.close()


def test_async_agent_and_async_recall_tool(memory):
    def reply(messages, i):
        last = messages[-1]
        if isinstance(last, ToolMessage):
            return "thanks"
        if last.text == "recall":
            return AIMessage(
                "", tool_calls=[{"name": "recall_memory", "args": {"query": "OPS-4801"}, "id": "a1"}]
            )
        return "ok"

    agent, model, _ = make_agent(memory, RecordingChatModel(reply=reply))

    async def run():
        config = {"configurable": {"thread_id": "async"}}
        for text in [*TEXTS[:12], "recall"]:
            await agent.ainvoke({"messages": [HumanMessage(text)]}, config)
        return config

    config = asyncio.run(run())
    assert image_blocks(model.calls[-1])
    state = agent.aget_state(config)
    values = asyncio.run(state).values
    assert values["optical_memory"]["page_ids"]
    result = next(m for m in values["messages"] if isinstance(m, ToolMessage))
    assert "Pages matching 'OPS-4801'" in result.text and "OPS-4801" in result.text


def test_checkpoint_stays_small_and_pages_age(tmp_path):
    memory = OpticalMemory(tmp_path / "m.db", backend="test-double", policy="budget:200", keep_recent_turns=0)
    conn = sqlite3.connect(tmp_path / "ckpt.db", check_same_thread=False)
    saver = SqliteSaver(conn)
    agent, _, _ = make_agent(memory, checkpointer=saver)
    config = {"configurable": {"thread_id": "size"}}

    def size() -> int:
        checkpoint = saver.get_tuple(config).checkpoint
        return len(saver.serde.dumps_typed(checkpoint)[1])

    chat(agent, "size", TEXTS[:10])
    early = size()
    chat(agent, "size", TEXTS[10:30])
    late = size()
    assert late < 8_000, "a checkpoint holds the kept messages and page ids, no images"
    assert late < 1.5 * early
    blob = saver.serde.dumps_typed(saver.get_tuple(config).checkpoint)[1]
    assert b"iVBOR" not in blob
    # later turns aged the older pages with the memory's policy (budget:200)
    modes = [p.mode for p in memory.session("size").pages()]
    assert modes[0] is Mode.TINY and len(modes) >= 2
    conn.close()
    memory.close()


@pytest.mark.parametrize("present", ["text", "tool"])
def test_models_without_vision(tmp_path, present):
    # the memory keeps its newest 2 paged-out turns as text: they are shown as messages
    mem = OpticalMemory(tmp_path / "m.db", backend="test-double", policy="budget:300", keep_recent_turns=2)
    agent, model, _ = make_agent(mem, present=present)
    chat(agent, "nv", TEXTS[:12])
    mem.wait()
    last = model.calls[-1]
    assert not image_blocks(last)
    shown = last[0].text
    session = mem.session("nv")
    page = session.pages()[0]
    unpaged = [t for t in session.turns() if not t.paged]
    assert len(unpaged) == 2
    texts = [m.text for m in last]
    assert all(t.content in texts for t in unpaged)
    if present == "text":
        assert session.recall(page.id) in shown  # read back by the decoder
        assert "OPS-4800" in shown
    else:
        assert f"page {page.id}: turns {page.turn_ids[0]}-{page.turn_ids[-1]}" in shown
        assert "OPS-4800" not in shown
    assert PageTokenCounter(mem)(last) <= 1200
    mem.close()


def test_ocr_failure_never_breaks_a_turn(tmp_path, caplog):
    mem = OpticalMemory(
        tmp_path / "m.db", backend=TestDoubleBackend(fail=True), policy="budget:300", keep_recent_turns=0
    )
    agent, model, _ = make_agent(mem)
    with caplog.at_level(logging.WARNING, logger="optimem"):
        chat(agent, "f", TEXTS[:12])  # background decoding fails: logged, the turns go on
        mem.wait()
    assert any("decode" in r.getMessage() for r in caplog.records)
    assert image_blocks(model.calls[-1])
    page = mem.session("f").pages()[0]
    from optimem.errors import BackendError
    from optimem.integrations.langchain.recall_tool import read_page

    with pytest.raises(BackendError):
        read_page(mem.session("f"), page.id, "raise")
    text = read_page(mem.session("f"), page.id, "log")
    assert "from the archive" in text and "OPS-4800" in text
    mem.close()


def test_chat_history_under_runnable_with_message_history(memory):
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
    from langchain_core.runnables.history import RunnableWithMessageHistory

    model = RecordingChatModel()
    prompt = ChatPromptTemplate.from_messages([MessagesPlaceholder("history"), ("human", "{input}")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        histories = {}

        def get(session_id):
            return histories.setdefault(
                session_id, OpticalChatMessageHistory(memory, session_id, budget_tokens=1000)
            )

        chain = RunnableWithMessageHistory(
            prompt | model, get, input_messages_key="input", history_messages_key="history"
        )
        for text in TEXTS[:12]:
            chain.invoke({"input": text}, config={"configurable": {"session_id": "h"}})
        assert image_blocks(model.calls[-1])
        assert model.calls[-1][-1].text == TEXTS[11]
        assert PageTokenCounter(memory)(model.calls[-1][:-1]) <= 1000
        assert memory.session("h").stats().turns == 24
        # optimem's own page messages handed back are never stored (or paged) again
        histories["h"].add_messages([*histories["h"].messages, HumanMessage("one more")])
        assert memory.session("h").stats().turns == 25
        histories["h"].clear()
        assert not memory.has_session("h") and histories["h"].messages == []


@pytest.mark.slow
def test_provider_converters_accept_the_page_blocks(memory):
    from langchain_anthropic.chat_models import _format_messages
    from langchain_openai.chat_models.base import _convert_message_to_dict

    agent, model, _ = make_agent(memory)
    chat(agent, "conv", TEXTS[:12])
    call = model.calls[-1]
    openai = [_convert_message_to_dict(m) for m in call]
    parts = [p for m in openai if isinstance(m["content"], list) for p in m["content"]]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == len(image_blocks(call))
    assert all(u.startswith("data:image/png;base64,iVBOR") for u in urls)
    _, anthropic = _format_messages(call, model="claude-sonnet-4-5")
    blocks = [b for m in anthropic if isinstance(m["content"], list) for b in m["content"]]
    images = [b for b in blocks if b["type"] == "image"]
    assert len(images) == len(image_blocks(call))
    assert all(
        b["source"] == {"type": "base64", "media_type": "image/png", "data": b["source"]["data"]}
        for b in images
    )


def test_options_are_checked(memory):
    with pytest.raises(ValueError, match="max_input_tokens"):
        OpticalMemoryMiddleware(memory=memory, trigger=("fraction", 0.5))
    with pytest.raises(ValueError, match="present"):
        OpticalMemoryMiddleware(memory=memory, present="audio")  # type: ignore[arg-type]
    mw = OpticalMemoryMiddleware(memory=memory, trigger=("fraction", 0.5), max_input_tokens=1000)
    assert mw.trigger_clauses == [{"tokens": 500}]
    mw = OpticalMemoryMiddleware(memory=memory, trigger=[{"messages": 3, "tokens": 10}, ("messages", 9)])
    few = [HumanMessage("a b c d e f g h i j k l m")] * 3
    assert mw.should_page(few) and not mw.should_page(few[:2])


@pytest.mark.slow
def test_end_to_end_through_the_cpu_ocr(tmp_path):
    mem = OpticalMemory(tmp_path / "cpu.db", backend="cpu", policy="budget:400", keep_recent_turns=0)
    agent, model, _ = make_agent(mem, present="text", budget_tokens=2500)
    chat(agent, "cpu", TEXTS[:10])
    mem.wait()
    session = mem.session("cpu")
    page = session.pages()[0]
    recalled = session.recall(page.id)
    source = "\n".join(t.content for t in session.turns() if t.id in set(page.turn_ids))
    assert fidelity(recalled, source) > 0.85  # the page text contains speaker labels too
    assert recalled in model.calls[-1][0].text  # the text-only model got the page read back
    assert not image_blocks(model.calls[-1])
    mem.close()


def test_core_imports_without_langchain():
    code = (
        "import sys\n"
        "for name in ('langchain', 'langchain_core', 'langgraph'): sys.modules[name] = None\n"
        "import optimem\n"
        "try:\n"
        "    import optimem.integrations.langchain\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'optimem[langchain]'" in out.stdout


def test_a_run_without_a_thread_id_is_refused_with_the_fix(memory):
    agent = create_agent(RecordingChatModel(), middleware=[OpticalMemoryMiddleware(memory=memory)])
    with pytest.raises(ValueError, match="thread_id"):
        agent.invoke({"messages": [HumanMessage("hello")]})


@pytest.mark.slow
def test_the_example_runs_as_is(tmp_path):
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    env |= {"OPTIMEM_EXAMPLE_TURNS": "10", "TMPDIR": str(tmp_path), "PYTHONPATH": str(root)}
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "langchain_agent.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    ).stdout
    assert "using RecordingChatModel" in out
    assert "(1 page images)" in out
    assert "memory page 1 (turns 1-" in out and "read by cpu" in out


def _no_tools_model():
    import itertools

    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    return GenericFakeChatModel(messages=itertools.repeat(AIMessage("ok")))


def test_a_model_without_tool_calling_is_told_in_one_line(memory):
    agent = create_agent(_no_tools_model(), middleware=[OpticalMemoryMiddleware(memory=memory)])
    with pytest.raises(NotImplementedError) as raised:
        agent.invoke({"messages": [HumanMessage("hello")]}, {"configurable": {"thread_id": "nt"}})
    message = str(raised.value)
    assert "\n" not in message and "GenericFakeChatModel cannot call tools" in message
    assert "recall_tool=False" in message
    with pytest.raises(ValueError, match="recall_tool=False"):  # told at construction when it can be
        OpticalMemoryMiddleware(memory=memory, model=_no_tools_model())
    with pytest.raises(ValueError, match="recall_tool=True"):
        OpticalMemoryMiddleware(memory=memory, present="tool", recall_tool=False)


def test_without_the_recall_tool_nothing_shown_names_it(memory):
    session = memory.session("quiet")
    session.add_turns([("user", text) for text in TEXTS[:12]])
    assert session.compress().created
    # each presentation, with a budget that shows the pages and one that leaves some out
    omitted = 0
    for present in ("images", "text"):
        for budget in (1200, 250):
            shown, info = memory_messages(session, budget, present=present, with_tool=False)
            text = json.dumps([m.content for m in shown])
            assert "recall_memory" not in text, (present, budget)
            omitted += info.get("omitted_pages", 0)
    assert omitted, "the small budget left pages out, so the omitted note was checked too"
    shown, _ = memory_messages(session, 1200, present="images", with_tool=True)
    assert "recall_memory" in json.dumps([m.content for m in shown])  # and named where the model has it


def test_the_recall_tool_is_named_to_a_model_that_has_it(memory):
    agent, model, _ = make_agent(memory)
    chat(agent, "loud", TEXTS[:12])
    assert "recall_memory" in json.dumps([m.content for m in model.calls[-1]])
    agent, model, _ = make_agent(memory, recall_tool=False)
    chat(agent, "quiet2", TEXTS[:12])
    assert image_blocks(model.calls[-1]) and "recall_memory" not in json.dumps(
        [m.content for m in model.calls[-1]]
    )


def test_the_recommended_setting_comes_from_the_budget(tmp_path):
    from optimem.integrations.langchain.middleware import recommended_settings

    assert recommended_settings(4000) == {
        "trigger": ("tokens", 2000),
        "keep": ("messages", 6),
        "policy": "budget:1900",
    }
    assert recommended_settings(2000)["policy"] == "budget:900"
    assert recommended_settings(8000)["policy"] == "budget:3800"
    with pytest.raises(ValueError, match="at least 1000"):
        recommended_settings(500)
    mw = OpticalMemoryMiddleware.for_budget(2000, memory=tmp_path / "m.db", backend="test-double")
    assert (
        mw.budget_tokens == 2000 and mw.trigger_clauses == [{"tokens": 1000}] and mw.keep == ("messages", 6)
    )
    assert mw.memory.policy.budget == 900
    mw.memory.close()
    # what the model sees stays within the budget over a long thread
    mw = OpticalMemoryMiddleware.for_budget(2000, memory=tmp_path / "n.db", backend="test-double")
    model = RecordingChatModel()
    agent = create_agent(model, middleware=[mw], checkpointer=InMemorySaver())
    chat(agent, "long", TEXTS)
    counter = PageTokenCounter(mw.memory)
    assert all(counter(call) <= 2000 for call in model.calls)
    assert image_blocks(model.calls[-1])
    mw.memory.close()
