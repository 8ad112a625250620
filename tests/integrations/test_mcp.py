"""`optimem mcp` through the official SDK's client, as a user's MCP client starts it: over stdio
(`python -m optimem.cli mcp …` as a child process) and over streamable HTTP on 127.0.0.1 with
the REST service's keys, against the real `cpu` OCR decoder.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("mcp", reason="the mcp extra is not installed (scripts/test.sh installs it)")

import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ImageContent, TextContent

from optimem import OpticalMemory
from optimem.cli.main import main
from optimem.server.auth import KeysFile
from optimem.server.process import ROOT, child_env, free_port

from ..server.conftest import _loopback_only  # noqa: F401  (HTTP to the servers started here only)

TOOLS = {"remember", "compress", "recall", "recall_turns", "search", "context", "stats", "sessions"}


def chat(n: int = 100) -> list[dict[str, Any]]:
    """A 100-turn chat whose every turn carries an identifier to recall exactly."""
    places = ["Chengdu", "Lisbon", "Oslo", "Tartu", "Kyoto"]
    return [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"Note {i}: locker {100 + i} holds crate K-{7000 + 13 * i} for the {places[i % 5]} trip.",
            "external_id": f"msg-{i}",
        }
        for i in range(n)
    ]


def payload(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    block = result.content[0]
    assert isinstance(block, TextContent)
    return json.loads(block.text)


def error_of(result: CallToolResult) -> dict[str, str]:
    """The REST error body a failed tool call carries, exactly as its only content."""
    assert result.is_error, result.content
    (block,) = result.content
    assert isinstance(block, TextContent)
    return json.loads(block.text)["error"]


def stdio_params(db: Path, *args: str) -> StdioServerParameters:
    """What a user writes in a client's configuration: the command and its arguments."""
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "optimem.cli", "mcp", "--db", str(db), *args],
        env=child_env(),
        cwd=str(ROOT),
    )


@asynccontextmanager
async def stdio_session(db: Path, *args: str) -> AsyncIterator[ClientSession]:
    with open(db.with_suffix(".log"), "w") as errlog:
        async with stdio_client(stdio_params(db, *args), errlog=errlog) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            yield s


@pytest.mark.slow
def test_stdio_remembers_a_long_chat_and_recalls_exact_turns(tmp_path):
    turns = chat()

    async def run() -> None:
        async with stdio_session(tmp_path / "m.db", "--decode", "lazy", "--session", "trip") as s:
            listed = {t.name: t for t in (await s.list_tools()).tools}
            assert set(listed) == TOOLS
            assert all(t.description and len(t.description) > 40 for t in listed.values())
            assert listed["recall"].annotations.read_only_hint is True

            # a retry of the first 60 turns inside the whole chat adds only the 40 new ones
            first = payload(await s.call_tool("remember", {"turns": turns[:60], "compress": False}))
            assert first["added"] == 60 and first["session"] == "trip"
            again = payload(await s.call_tool("remember", {"turns": turns}))
            assert again["added"] == 40 and again["already_stored"] == 60
            assert again["turn_ids"][:60] == first["turn_ids"] and len(set(again["turn_ids"])) == 100
            assert again["pages_created"], again

            stats = payload(await s.call_tool("stats", {}))
            assert stats["turns"] == 100 and stats["context_tokens"] < stats["text_tokens"]
            page = stats["pages"][0]
            first_turn, last_turn = page["turns"]
            ids = again["turn_ids"]
            assert first_turn == ids[0] and last_turn < ids[-1]

            # the context within a budget: the page as MCP image content, recent turns as text
            ctx = (await s.call_tool("context", {"budget_tokens": 4000})).content
            header = json.loads(ctx[0].text)
            assert header["tokens"] <= 4000 and header["omitted_page_ids"] == []
            images = [b for b in ctx if isinstance(b, ImageContent)]
            assert len(images) == len(stats["pages"]) and images[0].mime_type == "image/png"
            png = Image.open(io.BytesIO(base64.b64decode(images[0].data)))
            assert png.size == (640, 640)  # a Small page
            texts = [b.text for b in ctx if isinstance(b, TextContent)]
            # one session in a fresh database: turn numbers are the turn ids
            assert page["number"] == 1
            assert f"[memory page 1 (id {page['page_id']}): turns {first_turn}-{last_turn}]" in texts
            assert f"[turn {ids[-1]}] assistant: {turns[-1]['content']}" in texts
            small = (await s.call_tool("context", {"budget_tokens": 150})).content
            assert json.loads(small[0].text)["omitted_page_ids"] == [p["page_id"] for p in stats["pages"]]

            # search reads the page first (wait), then names its turn range and verified lines
            k = 40  # a turn on the first page
            found = payload(await s.call_tool("search", {"query": f"K-{7000 + 13 * k}", "wait": True}))
            hit = found["hits"][0]
            assert hit["page_id"] == page["page_id"] and hit["turns"] == [first_turn, last_turn]
            assert found["unsearched"] == 0 and 0 < hit["lines_exact"] <= hit["lines_checked"]

            # recall gives each turn's text (with its speaker label) by turn id: identifiers exact
            read = payload(await s.call_tool("recall", {"page_ids": [page["page_id"]], "split_turns": True}))
            (pg,) = read["pages"]
            assert pg["backend"] in ("cpu", "rapidocr") and pg["lines_checked"] > 0
            by_id = {int(tid): text for tid, text in pg["turn_texts"].items()}
            assert set(by_id) == set(range(first_turn, last_turn + 1))
            exact = sum(
                by_id[ids[i]] == f"{turns[i]['role']}: {turns[i]['content']}" for i in range(len(by_id))
            )
            assert exact >= 0.9 * len(by_id), exact
            # an identifier is exact wherever the turn's lines passed their checks; a turn
            # whose lines did not is named unverified, never passed off as exact
            doubtful = set(pg.get("unverified_turns", []))
            assert all(
                f"K-{7000 + 13 * i}" in by_id[ids[i]] for i in range(len(by_id)) if ids[i] not in doubtful
            )

            # whole turns by id, each with its verified state
            back = payload(await s.call_tool("recall_turns", {"turn_ids": [ids[0], ids[1]]}))["turns"]
            assert [t["turn_id"] for t in back] == [ids[0], ids[1]]
            assert all(t["text"] == turns[i]["content"] or t["verified"] is False for i, t in enumerate(back))

            # the page as resources: its image and its recalled text
            uri = f"optimem://sessions/trip/pages/{page['page_id']}"
            blob = (await s.read_resource(uri + ".png")).contents[0]
            assert blob.mime_type == "image/png" and base64.b64decode(blob.blob)[:8] == b"\x89PNG\r\n\x1a\n"
            text = (await s.read_resource(uri + ".txt")).contents[0]
            whole = payload(await s.call_tool("recall", {"page_ids": [page["page_id"]]}))["pages"][0]
            assert text.text == whole["text"] and whole["cached"] is True

    asyncio.run(run())


@pytest.mark.slow
def test_bad_input_gives_tool_errors_in_the_rest_services_words(tmp_path):
    async def run() -> None:
        async with stdio_session(tmp_path / "m.db", "--decode", "lazy") as s:
            one = [{"role": "user", "content": "hello", "external_id": "a"}]
            assert not (await s.call_tool("remember", {"turns": one})).is_error
            cases: list[tuple[str, dict[str, Any], str, str]] = [
                (
                    "remember",
                    {"turns": [{"role": "robot", "content": "x"}]},
                    "validation_error",
                    "turns[0].role",
                ),
                ("remember", {"turns": []}, "validation_error", "turns: List should have at least 1 item"),
                (
                    "remember",
                    {"turns": [{"role": "user", "content": "   "}]},
                    "input_error",
                    "whitespace-only turn",
                ),
                ("remember", {"turns": one * 2}, "duplicate_external_id", "appears twice in one batch"),
                (
                    "remember",
                    {"turns": one, "session": "bad id!"},
                    "validation_error",
                    "session id 'bad id!'",
                ),
                ("recall", {"page_ids": [999]}, "page_not_found", "no page 999 in session 'default'"),
                ("recall", {"page_ids": [1], "session": "nope"}, "session_not_found", "no session 'nope'"),
                ("recall", {"page_ids": list(range(1, 22))}, "too_many_pages", "the limit is 20"),
                ("recall", {"page_ids": ["one"]}, "validation_error", "page_ids[0]"),
                ("search", {"query": ""}, "validation_error", "query"),
                ("search", {"query": "hello", "limit": 51}, "too_many_hits", "over the 50 allowed"),
                ("context", {"budget_tokens": 0}, "validation_error", "budget_tokens"),
                ("context", {"consumer": "nobody"}, "validation_error", "consumer"),
                ("compress", {"session": "nope"}, "session_not_found", "no session 'nope'"),
            ]
            for tool, args, type_, words in cases:
                err = error_of(await s.call_tool(tool, args))
                assert (err["type"], words in err["message"]) == (type_, True), (tool, args, err)
            assert (await s.call_tool("no_such_tool", {})).is_error
            with pytest.raises(MCPError, match="page_not_found"):
                await s.read_resource("optimem://sessions/default/pages/999.png")
            with pytest.raises(MCPError, match="session_not_found"):
                await s.read_resource("optimem://sessions/nope/pages/1.txt")
            # and the server is still there, with nothing half-stored
            assert payload(await s.call_tool("stats", {}))["turns"] == 1

    asyncio.run(run())


def test_published_schemas_are_slim_and_keep_the_rules():
    from optimem.integrations.mcp.schema import slim

    schema = {
        "title": "rememberArguments",
        "type": "object",
        "properties": {
            "title": {"title": "Title", "type": "string", "pattern": "x+"},  # a field named title stays
            "name": {"anyOf": [{"type": "string", "maxLength": 9}, {"type": "null"}], "default": None},
            "when": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}], "default": None},
            "n": {"default": 3, "examples": [4], "type": "integer", "minimum": 1},
        },
        "required": ["title"],
    }
    assert slim(schema) == {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "name": {"type": "string", "maxLength": 9},
            "when": {"anyOf": [{"type": "string"}, {"type": "integer"}], "default": None},
            "n": {"default": 3, "type": "integer", "minimum": 1},
        },
        "required": ["title"],
    }


# -- streamable HTTP with keys ----------------------------------------------------------------


@contextmanager
def http_mcp(tmp_path: Path, *args: str) -> Iterator[str]:
    """`optimem mcp --http` on a free loopback port; yields its /mcp URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "optimem.cli", "mcp", "--http", "--port", str(port)]
    cmd += ["--db", str(tmp_path / "m.db"), "--decode", "lazy", *args]
    log = (tmp_path / "mcp.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=child_env(), stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, (tmp_path / "mcp.log").read_text()
        try:
            if httpx2.get(url + "/healthz", timeout=1.0).status_code == 200:
                break
        except httpx2.TransportError:
            assert time.monotonic() < deadline, "optimem mcp --http did not start"
            time.sleep(0.1)
    try:
        yield url + "/mcp"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, (tmp_path / "mcp.log").read_text()  # SIGTERM: a graceful exit


@pytest.fixture
def http_server(tmp_path) -> Iterator[dict[str, Any]]:
    """Keys for tenants acme and globex (and a revoked one of acme's)."""
    keys = KeysFile(tmp_path / "keys.json")
    acme, globex = keys.add("acme")[1], keys.add("globex")[1]
    revoked_record, revoked = keys.add("acme")
    keys.revoke(revoked_record.id)
    with http_mcp(tmp_path, "--keys", str(tmp_path / "keys.json")) as url:
        yield {"url": url, "acme": acme, "globex": globex, "revoked": revoked}


@asynccontextmanager
async def http_session(url: str, key: str | None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as client,  # OCR on a busy machine takes seconds
        streamable_http_client(url, http_client=client) as (r, w),
        ClientSession(r, w) as s,
    ):
        await s.initialize()
        yield s


@pytest.mark.slow
def test_http_keeps_tenants_apart(http_server):
    url = http_server["url"]

    async def run() -> None:
        async with http_session(url, http_server["acme"]) as acme:
            assert {t.name for t in (await acme.list_tools()).tools} == TOOLS
            added = payload(await acme.call_tool("remember", {"turns": chat(), "session": "plans"}))
            assert added["added"] == 100 and added["pages_created"]
            ctx = (await acme.call_tool("context", {"session": "plans", "budget_tokens": 4000})).content
            assert any(isinstance(b, ImageContent) for b in ctx)
            err = error_of(await acme.call_tool("recall", {"session": "plans", "page_ids": [999]}))
            assert err == {"type": "page_not_found", "message": "no page 999 in session 'plans'"}  # no tenant
            page_id = added["pages_created"][0]
        async with http_session(url, http_server["globex"]) as globex:
            assert payload(await globex.call_tool("sessions", {})) == {"sessions": []}
            for tool, args in (
                ("stats", {"session": "plans"}),
                ("recall", {"session": "plans", "page_ids": [page_id]}),
                ("search", {"session": "plans", "query": "Chengdu"}),
                ("context", {"session": "plans"}),
            ):
                assert error_of(await globex.call_tool(tool, args)) == {
                    "type": "session_not_found",
                    "message": "no session 'plans'",
                }
            with pytest.raises(MCPError):
                await globex.read_resource(f"optimem://sessions/plans/pages/{page_id}.png")
            # globex's own session of the same name is another session
            mine = payload(await globex.call_tool("remember", {"turns": chat(3), "session": "plans"}))
            assert mine["added"] == 3
            assert payload(await globex.call_tool("stats", {"session": "plans"}))["turns"] == 3
        async with http_session(url, http_server["acme"]) as acme:
            assert payload(await acme.call_tool("stats", {"session": "plans"}))["turns"] == 100

    asyncio.run(run())
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    accept = {"Accept": "application/json, text/event-stream"}
    for key in (None, "om_not-a-key", http_server["revoked"]):
        headers = accept | ({"Authorization": f"Bearer {key}"} if key else {})
        assert httpx2.post(url, json=init, headers=headers).status_code == 401


@pytest.mark.slow
def test_http_on_loopback_without_keys_is_one_rate_limited_tenant(tmp_path):
    async def run() -> None:
        with http_mcp(tmp_path, "--rate-per-minute", "3", "--tenant", "team") as url:
            async with http_session(url, None) as s:
                one = [{"role": "user", "content": "hello", "external_id": "a"}]
                assert payload(await s.call_tool("remember", {"turns": one, "session": "s"}))["added"] == 1
                assert payload(await s.call_tool("sessions", {})) == {"sessions": ["s"]}
                assert payload(await s.call_tool("stats", {"session": "s"}))["turns"] == 1
                err = error_of(await s.call_tool("sessions", {}))
                assert err["type"] == "rate_limited" and "more than 3 requests a minute" in err["message"]

    asyncio.run(run())
    with OpticalMemory(tmp_path / "m.db") as memory:
        assert memory.sessions() == ["team/s"]  # the tenant prefixes the session, as in the REST service


# -- the command -----------------------------------------------------------------------------


def test_http_without_keys_serves_loopback_only(tmp_path):
    result = CliRunner().invoke(main, ["mcp", "--http", "--host", "0.0.0.0", "--db", str(tmp_path / "m.db")])
    assert result.exit_code == 1 and "refusing to serve 0.0.0.0 without API keys" in result.output
    result = CliRunner().invoke(main, ["mcp", "--keys", str(tmp_path / "k.json")])
    assert result.exit_code == 2 and "--keys applies to --http only" in result.output


@pytest.mark.slow  # a fresh interpreter with the extra hidden
def test_without_the_extra_one_clear_line(tmp_path):
    """The core imports without the SDK; `optimem mcp` then names the extra to install."""
    hide = "import sys; sys.modules['mcp'] = None; "
    core = subprocess.run(
        [sys.executable, "-c", hide + "import optimem, optimem.cli; print('ok')"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert core.stdout.strip() == "ok", core.stderr
    run = subprocess.run(
        [sys.executable, "-c", hide + "from optimem.cli import main; main(['mcp', '--db', 'x.db'])"],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert "pip install 'optimem[mcp]'" in lines[0]
    assert not (tmp_path / "x.db").exists()
