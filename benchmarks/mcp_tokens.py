"""What `optimem mcp` costs a model in tokens: its tool definitions, and typical results.

    python benchmarks/mcp_tokens.py [--out benchmarks/results/mcp_tokens.json]

Starts `python -m optimem.cli mcp` over stdio as an MCP client would (the SDK's own client),
remembers the embedded default chat (105 turns, optimem/data/default_chat.json) with the
default policy (budget:4000) and the `cpu` decoder, then counts with optimem's token counter
(tiktoken o200k_base) what the client receives: each tool's definition (name, description and
input schema as compact JSON, roughly what a host puts in the model's tool list), the server's
instructions, and the text of each tool's result. Page images are not text: their price is what
the `context` header reports, by the consumer's image-token rule (DeepSeek-OCR positions by
default, Anthropic's and OpenAI's rules with `consumer`). Hosts wrap tool lists in their own
prompt, so these are lower bounds of what a model is billed. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp_types import CallToolResult, ImageContent, TextContent

from optimem.bench.datasets import load_default
from optimem.bench.machine import describe
from optimem.tokens import count_tokens

ROOT = Path(__file__).resolve().parents[1]


def tokens(text: str) -> int:
    return count_tokens(text, "o200k_base")


def result_cost(result: CallToolResult) -> dict[str, Any]:
    texts = [b.text for b in result.content if isinstance(b, TextContent)]
    images = sum(isinstance(b, ImageContent) for b in result.content)
    out: dict[str, Any] = {"text_tokens": sum(tokens(t) for t in texts), "images": images}
    if result.is_error:
        out["error"] = True
    return out


async def measure(db: Path, backend: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "optimem.cli", "mcp", "--db", str(db), "--backend", backend, "--session", "trip"],
        env=env,
        cwd=str(ROOT),
    )
    chat = load_default()
    turns = [
        {"role": t.role, "content": t.content, "external_id": t.id} | ({"name": t.name} if t.name else {})
        for t in chat.turns
    ]
    out: dict[str, Any] = {"chat": {"name": chat.name, "turns": len(turns)}}
    async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
        init = await s.initialize()
        out["instructions_tokens"] = tokens(init.instructions or "")
        listed = (await s.list_tools()).tools
        defs = {
            t.name: tokens(
                json.dumps(
                    {"name": t.name, "description": t.description, "input_schema": t.input_schema},
                    ensure_ascii=False,
                    separators=(",", ":"),
                )
            )
            for t in listed
        }
        out["tool_definitions"] = defs | {"all": sum(defs.values())}

        results: dict[str, Any] = {}
        t0 = time.perf_counter()
        remembered = await s.call_tool("remember", {"turns": turns})
        results["remember (105 turns, with compress)"] = result_cost(remembered)
        payload = json.loads(remembered.content[0].text)  # type: ignore[union-attr]
        out["chat"]["text_tokens"] = sum(tokens(t["content"]) for t in turns)
        out["chat"]["pages"] = len(payload["pages_created"])
        one = [{"role": "user", "content": "And the cutover window?", "external_id": "next-1"}]
        results["remember (1 turn)"] = result_cost(await s.call_tool("remember", {"turns": one}))
        results["compress"] = result_cost(await s.call_tool("compress", {}))
        results["stats"] = result_cost(await s.call_tool("stats", {}))
        results["sessions"] = result_cost(await s.call_tool("sessions", {}))
        for consumer in (None, "anthropic", "openai-tiles"):
            args: dict[str, Any] = {"budget_tokens": 4000} | ({"consumer": consumer} if consumer else {})
            ctx = await s.call_tool("context", args)
            header = json.loads(ctx.content[0].text)  # type: ignore[union-attr]
            results[f"context (budget 4000, {consumer or 'deepseek-ocr positions'})"] = result_cost(ctx) | {
                "priced_tokens": header["tokens"],
                "omitted_pages": len(header["omitted_page_ids"]),
            }
        found = await s.call_tool("search", {"query": "pg_upgrade cutover window", "wait": True})
        results["search (5 hits, after reading every page)"] = result_cost(found)
        hit = json.loads(found.content[0].text)["hits"][0]["page_id"]  # type: ignore[union-attr]
        results["recall (1 page)"] = result_cost(await s.call_tool("recall", {"page_ids": [hit]}))
        results["recall (1 page, split_turns)"] = result_cost(
            await s.call_tool("recall", {"page_ids": [hit], "split_turns": True})
        )
        results["an error"] = result_cost(await s.call_tool("recall", {"page_ids": [999]}))
        out["results"] = results
        out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", default="cpu", help="decoder of the pages read back")
    parser.add_argument("--out", type=Path, help="write JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = asyncio.run(measure(Path(tmp) / "memory.db", args.backend))
    data = {
        "schema": "optimem.mcp_tokens/1",
        "counter": "tiktoken o200k_base (optimem.tokens)",
        "backend": args.backend,
        "machine": describe(),
    } | data
    print(f"instructions: {data['instructions_tokens']} tokens")
    print(f"{'tool definition':<16} {'tokens':>6}")
    for name, n in data["tool_definitions"].items():
        print(f"{name:<16} {n:>6}")
    print(f"\n{'result':<52} {'text tok':>8} {'images':>6} {'priced':>7}")
    for name, r in data["results"].items():
        print(f"{name:<52} {r['text_tokens']:>8} {r['images']:>6} {r.get('priced_tokens', ''):>7}")
    if args.out:
        args.out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.out} ({data['machine']})")


if __name__ == "__main__":
    main()
