"""The /v1 endpoints end to end over real HTTP (test-double OCR: plumbing, not fidelity)."""

from __future__ import annotations

import base64
import io
import os
import shutil
import subprocess
import sys

import httpx
import pytest
from PIL import Image

from optimem.server.process import ROOT

from .conftest import METRICS_KEY, auth, words_turns


def test_turns_compress_recall_context_stats_delete(server, keys):
    h = auth(keys["acme"])
    with httpx.Client(base_url=server.url, headers=h, timeout=60) as c:
        one = c.post(
            "/v1/sessions/flow/turns",
            json={"role": "user", "content": "The cutover ticket is OPS-4821 for Zanzibar."},
        )
        assert one.status_code == 201, one.text
        assert one.json()["session"] == "flow" and len(one.json()["turn_ids"]) == 1
        batch = c.post("/v1/sessions/flow/turns", json={"turns": words_turns(24)})
        assert batch.status_code == 201 and len(batch.json()["turn_ids"]) == 24

        turns = c.get("/v1/sessions/flow/turns", params={"offset": 1, "limit": 5}).json()
        assert turns["total"] == 25 and [t["seq"] for t in turns["turns"]] == [2, 3, 4, 5, 6]
        assert turns["turns"][0]["content"].startswith("Turn 0:")

        done = c.post("/v1/compress", json={"session": "flow", "flush": True})
        assert done.status_code == 200, done.text
        created = done.json()["created"]
        assert created and done.json()["tokens_after"] < done.json()["tokens_before"]

        pages = c.get("/v1/sessions/flow/pages").json()["pages"]
        assert [p["id"] for p in pages] == created
        assert pages[0]["mode"] == "small" and pages[0]["compression"] > 1
        assert c.get(f"/v1/sessions/flow/pages/{created[0]}").json()["turn_ids"] == pages[0]["turn_ids"]
        png = c.get(f"/v1/sessions/flow/pages/{created[0]}.png")
        assert png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).size == (640, 640)

        read = c.post("/v1/recall", json={"session": "flow", "page_ids": [created[0]]}).json()
        page = read["pages"][0]
        assert "OPS-4821" in page["text"] and page["backend"] == "test-double"
        assert any(v["value"] == "OPS-4821" for v in page["verbatim"])
        assert page["verified"] == [True] * len(page["lines"]) and "\n".join(page["lines"]) == page["text"]
        ids = [one.json()["turn_ids"][0], batch.json()["turn_ids"][0]]
        whole = c.post("/v1/recall/turns", json={"session": "flow", "turn_ids": ids})
        assert whole.status_code == 200, whole.text
        first, second = whole.json()["turns"]
        assert first["text"] == "The cutover ticket is OPS-4821 for Zanzibar." and first["verified"] is True
        assert second["text"].startswith("Turn 0:") and second["pages"] == [created[0]]
        missing = c.post("/v1/recall/turns", json={"session": "flow", "turn_ids": [99999]})
        assert missing.status_code == 404 and "no turn 99999" in missing.json()["error"]["message"]
        hits = c.post("/v1/recall", json={"session": "flow", "query": "Zanzibar", "limit": 3}).json()["hits"]
        assert hits and hits[0]["page_id"] == created[0]

        latest = {"role": "user", "content": "And the rollback owner?", "name": "Priya"}
        assert c.post("/v1/sessions/flow/turns", json=latest).status_code == 201
        ctx = c.get("/v1/sessions/flow/context", params={"budget_tokens": 100000}).json()
        assert ctx["messages"][-1] == {"role": "user", "content": "And the rollback owner?", "name": "Priya"}
        assert ctx["items"][-1]["kind"] == "text" and ctx["items"][-1]["presented"] == "text"
        assert ctx["omitted_page_ids"] == [] and ctx["tokens"] <= 100000
        images = [
            b
            for m in ctx["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b["type"] == "image"
        ]
        shown = [i for i in ctx["items"] if i["kind"] == "page" and i["presented"] == "image"]
        assert all(i["presented"] == "text" for i in ctx["items"] if i["kind"] == "text")
        assert len(images) == len(shown)
        if images:
            Image.open(io.BytesIO(base64.b64decode(images[0]["base64"]))).verify()

        st = c.get("/v1/sessions/flow/stats").json()
        assert st["turns"] == 26 and st["per_mode"]["small"]["pages"] == len(created)
        tight = c.get("/v1/sessions/flow/context", params={"budget_tokens": st["context_tokens"]}).json()
        assert tight["omitted_page_ids"] == [] and tight["omitted_turn_ids"] == []

        assert "flow" in c.get("/v1/sessions").json()["sessions"]
        gone = c.delete("/v1/sessions/flow")
        assert gone.status_code == 200 and gone.json()["deleted"]["turns"] == 26
        assert gone.json()["deleted"]["pages"] == len(created)
        assert c.get("/v1/sessions/flow/stats").status_code == 404
        assert "flow" not in c.get("/v1/sessions").json()["sessions"]


def test_external_ids_make_retries_safe(server, keys):
    with httpx.Client(base_url=server.url, headers=auth(keys["acme"]), timeout=30) as c:
        body = {"turns": [{"role": "user", "content": "hello", "external_id": "m1"}]}
        first = c.post("/v1/sessions/retry/turns", json=body).json()["turn_ids"]
        dup = c.post("/v1/sessions/retry/turns", json=body)
        assert dup.status_code == 409 and dup.json()["error"]["type"] == "duplicate_external_id"
        twice = {"turns": [{"role": "user", "content": "a", "external_id": "x"}] * 2}
        assert c.post("/v1/sessions/retry/turns", json=twice).status_code == 409
        again = c.post("/v1/sessions/retry/turns", json={**body, "skip_existing": True})
        assert again.status_code == 201 and again.json()["turn_ids"] == first
        assert c.get("/v1/sessions/retry/turns").json()["total"] == 1


def test_errors_are_json_with_the_library_message(server, keys):
    with httpx.Client(base_url=server.url, headers=auth(keys["acme"]), timeout=30) as c:
        empty = c.post("/v1/sessions/bad/turns", json={"role": "user", "content": "   "})
        assert empty.status_code == 422
        assert empty.json()["error"] == {
            "type": "input_error",
            "message": "turn 0: empty or whitespace-only turn: there is nothing to remember",
        }
        surrogate = c.post(
            "/v1/sessions/bad/turns",
            content=b'{"role": "user", "content": "a\\ud800b"}',
            headers={"content-type": "application/json"},
        )
        assert surrogate.status_code == 422 and "surrogate" in surrogate.json()["error"]["message"]
        # a batch with one bad turn stores nothing
        mixed = c.post(
            "/v1/sessions/bad/turns",
            json={"turns": [{"role": "user", "content": "ok"}, {"role": "user", "content": ""}]},
        )
        assert mixed.status_code == 422 and mixed.json()["error"]["message"].startswith("turn 1:")
        assert c.get("/v1/sessions/bad/turns").status_code == 404
        role = c.post("/v1/sessions/bad/turns", json={"role": "robot", "content": "hi"})
        assert role.status_code == 422 and role.json()["error"]["type"] == "validation_error"
        name = c.post("/v1/sessions/has%20space/turns", json={"role": "user", "content": "hi"})
        assert name.status_code == 422
        missing = c.post("/v1/recall", json={"session": "nope", "page_ids": [1]})
        assert missing.status_code == 404
        assert missing.json() == {"error": {"type": "session_not_found", "message": "no session 'nope'"}}
        both = c.post("/v1/recall", json={"session": "nope", "page_ids": [1], "query": "x"})
        assert both.status_code == 422 and both.json()["error"]["type"] == "validation_error"
        c.post("/v1/sessions/p/turns", json={"role": "user", "content": "hi"})
        page = c.get("/v1/sessions/p/pages/999999.png")
        assert page.status_code == 404 and page.json()["error"]["type"] == "page_not_found"
        assert "acme" not in page.json()["error"]["message"]
        consumer = c.get("/v1/sessions/p/context", params={"consumer": "nobody"})
        assert consumer.status_code == 422
        assert c.get("/v1/nothing-here").json()["error"]["type"] == "not_found"


def test_health_ready_metrics_and_openapi(server, keys):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz").json()
    assert ready["status"] == "ready" and ready["backend"] == "test-double"
    with httpx.Client(base_url=server.url, headers=auth(keys["acme"]), timeout=30) as c:
        c.post("/v1/sessions/m/turns", json={"turns": words_turns(12)})
        c.post("/v1/compress", json={"session": "m", "flush": True})
        c.post("/v1/recall", json={"session": "m", "query": "cutover"})
    assert httpx.get(server.url + "/metrics").status_code == 401  # keys: metrics need their own key
    assert (
        httpx.get(server.url + "/metrics", headers=auth(keys["acme"])).status_code == 401
    )  # a tenant's won't do
    text = httpx.get(server.url + "/metrics", headers=auth(METRICS_KEY)).text
    assert 'optimem_http_requests_total{method="POST",route="/v1/compress",status="200"}' in text
    # labels are route templates, methods, statuses and modes: no tenant, session or key shows
    for secret in ("acme", "globex", '"m"', "/v1/sessions/m/", keys["acme"]):
        assert secret not in text, secret
    assert 'route="/v1/sessions/{session}/turns"' in text  # templates, never raw paths
    assert "optimem_compress_seconds_count" in text and 'optimem_recall_seconds_count{kind="query"}' in text
    assert 'optimem_pages{mode="small"}' in text and "optimem_decode_queue" in text
    spec = httpx.get(server.url + "/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/sessions/{session}/turns",
        "/v1/compress",
        "/v1/recall",
        "/v1/sessions/{session}/context",
        "/v1/sessions/{session}/pages",
        "/v1/sessions/{session}/pages/{page_id}.png",
        "/v1/sessions/{session}/stats",
        "/v1/sessions/{session}",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths, path
    assert "examples" in spec["components"]["schemas"]["CompressIn"]
    assert httpx.get(server.url + "/docs").status_code == 200


def test_the_examples_run_against_a_server(server, keys):
    env = {**os.environ, "OPTIMEM_URL": server.url, "OPTIMEM_KEY": keys["acme"]}
    py = subprocess.run(
        [sys.executable, "examples/rest_client.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert py.returncode == 0, py.stderr
    assert "hit: page" in py.stdout and "exact strings kept: OPS-4821" in py.stdout
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: examples/rest_client.sh not run")
    sh = subprocess.run(
        ["bash", "examples/rest_client.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert sh.returncode == 0, sh.stdout + sh.stderr
    assert '"hits":[{"page_id"' in sh.stdout and "200 image/png" in sh.stdout
