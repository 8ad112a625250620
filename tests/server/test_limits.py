"""Every limit answers with its status and a JSON error: 413, 422, 429 with Retry-After."""

from __future__ import annotations

import httpx
import pytest

from optimem.server.process import Server

from .conftest import auth, words_turns


@pytest.fixture(scope="module")
def limited(tmp_path_factory, keys):
    db = tmp_path_factory.mktemp("limits") / "memory.db"
    srv = Server(
        db,
        "--keys",
        keys["file"],
        "--rate-per-minute",
        "20",
        "--max-pages-per-recall",
        "2",
        "--decode",
        "now",
        env={"OPTIMEM_MAX_TURNS_PER_REQUEST": "30"},
    ).start()
    yield srv
    srv.stop()


def test_body_size_batch_size_turn_size_and_pages_per_recall(limited, keys):
    with httpx.Client(base_url=limited.url, headers=auth(keys["acme"]), timeout=60) as c:
        big = "x" * (8 * 1024 * 1024 + 1)
        declared = c.post("/v1/sessions/l/turns", content=big, headers={"content-type": "application/json"})
        assert declared.status_code == 413 and declared.json()["error"]["type"] == "payload_too_large"

        def chunks():  # no Content-Length: counted while streaming
            for _ in range(9):
                yield b"x" * (1024 * 1024)

        streamed = c.post(
            "/v1/sessions/l/turns", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413 and streamed.json()["error"]["type"] == "payload_too_large"

        many = c.post("/v1/sessions/l/turns", json={"turns": words_turns(31, words=3)})
        assert many.status_code == 413 and many.json()["error"]["type"] == "too_many_turns"

        huge = c.post("/v1/sessions/l/turns", json={"role": "user", "content": "a" * 4_000_001})
        assert huge.status_code == 422
        assert "exceeds the 4,000,000 limit" in huge.json()["error"]["message"]

        assert c.post("/v1/sessions/l/turns", json={"turns": words_turns(30)}).status_code == 201
        created = c.post("/v1/compress", json={"session": "l", "flush": True}).json()["created"]
        assert len(created) >= 2
        three = c.post("/v1/recall", json={"session": "l", "page_ids": [created[0]] * 3})
        assert three.status_code == 422 and three.json()["error"]["type"] == "too_many_pages"
        two = c.post("/v1/recall", json={"session": "l", "page_ids": created[:2]})
        assert two.status_code == 200 and len(two.json()["pages"]) == 2
        hits = c.post("/v1/recall", json={"session": "l", "query": "cutover", "limit": 51})
        assert hits.status_code == 422 and hits.json()["error"]["type"] == "too_many_hits"
        budget = c.get("/v1/sessions/l/context", params={"budget_tokens": 0})
        assert budget.status_code == 422 and budget.json()["error"]["type"] == "validation_error"


def test_requests_per_key_per_minute(limited, keys):
    codes = []
    with httpx.Client(base_url=limited.url, headers=auth(keys["globex"]), timeout=30) as c:
        for _ in range(25):
            r = c.get("/v1/sessions")
            codes.append(r.status_code)
            if r.status_code == 429:
                refused = r
    assert codes[:20] == [200] * 20 and codes[-1] == 429
    assert refused.json()["error"]["type"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert httpx.get(limited.url + "/healthz").status_code == 200  # never rate limited
