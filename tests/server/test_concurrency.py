"""50 concurrent clients adding turns, compressing and recalling: zero errors, nothing lost."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from optimem.server.process import Server

from .conftest import auth, words_turns

CLIENTS = 50


async def _client(url: str, key: str, n: int) -> tuple[list[int], list[int]]:
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, headers=auth(key), timeout=120) as c:
        own = f"c{n}"
        for k in range(2):
            r = await c.post(f"/v1/sessions/{own}/turns", json={"turns": words_turns(6, tag=f" c{n}-{k}")})
            statuses.append(r.status_code)
            r = await c.post(
                "/v1/sessions/shared/turns",
                json={"role": "user", "content": f"client {n} round {k} says OPS-{n}"},
            )
            statuses.append(r.status_code)
        r = await c.post("/v1/compress", json={"session": own, "flush": True})
        statuses.append(r.status_code)
        created = r.json().get("created", [])
        r = await c.post("/v1/recall", json={"session": own, "query": f"c{n}-1"})
        statuses.append(r.status_code)
        if created:
            r = await c.post("/v1/recall", json={"session": own, "page_ids": created[:1]})
            statuses.append(r.status_code)
        r = await c.get(f"/v1/sessions/{own}/context", params={"budget_tokens": 2000})
        statuses.append(r.status_code)
        return statuses, created


@pytest.mark.slow
def test_fifty_clients(server, keys):
    async def run():
        return await asyncio.gather(*(_client(server.url, keys["acme"], n) for n in range(CLIENTS)))

    results = asyncio.run(run())
    statuses = [s for r, _ in results for s in r]
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    assert all(created for _, created in results)
    with httpx.Client(base_url=server.url, headers=auth(keys["acme"]), timeout=60) as c:
        for n in range(CLIENTS):
            turns = c.get(f"/v1/sessions/c{n}/turns").json()
            assert turns["total"] == 12
            assert all(f" c{n}-" in t["content"] for t in turns["turns"])  # nothing crossed sessions
            pages = c.get(f"/v1/sessions/c{n}/pages").json()["pages"]
            assert {t for p in pages for t in p["turn_ids"]} == {t["id"] for t in turns["turns"]}
        shared = c.get("/v1/sessions/shared/turns").json()
        assert shared["total"] == 2 * CLIENTS
        said = sorted(t["content"] for t in shared["turns"])
        assert said == sorted(f"client {n} round {k} says OPS-{n}" for n in range(CLIENTS) for k in range(2))


@pytest.mark.slow
def test_two_worker_processes_share_one_database(tmp_path):
    srv = Server(tmp_path / "memory.db", "--workers", "2", "--decode", "now").start()
    try:

        async def run():
            async with httpx.AsyncClient(base_url=srv.url, timeout=60) as c:
                adds = [
                    c.post("/v1/sessions/w/turns", json={"role": "user", "content": f"turn {i} OPS-{i}"})
                    for i in range(40)
                ]
                return [r.status_code for r in await asyncio.gather(*adds)]

        assert set(asyncio.run(run())) == {201}
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.get("/v1/sessions/w/turns").json()["total"] == 40
            assert c.post("/v1/compress", json={"session": "w", "flush": True}).json()["created"]
            assert c.get("/v1/sessions/w/stats").json()["turns"] == 40
    finally:
        assert srv.stop() in (0, -signal.SIGTERM)
