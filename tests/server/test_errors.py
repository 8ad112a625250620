"""Error answers in-process: 415 for a body that is not JSON, one sentence per validation error."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from optimem import OpticalMemory
from optimem.server import Settings, create_app


@pytest.fixture
def client(tmp_path):
    memory = OpticalMemory(tmp_path / "m.db", backend="test-double")
    app = create_app(Settings(db=str(tmp_path / "m.db"), backend="test-double"), memory=memory)
    with TestClient(app) as c:
        yield c
    memory.close()


def error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_that_is_not_json_is_415(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    for path, body in [
        ("/v1/sessions/s/turns", b'{"role": "user", "content": "hi"}'),
        ("/v1/compress", b'{"session": "s"}'),
        ("/v1/recall", b'{"session": "s", "query": "hi"}'),
    ]:
        err = error(client.post(path, content=body, headers=headers), 415)
        assert err["type"] == "unsupported_media_type"
        assert "Content-Type: application/json" in err["message"]
        assert (content_type or "no Content-Type") in err["message"]


def test_json_with_a_suffix_type_is_json(client):
    response = client.post(
        "/v1/sessions/s/turns",
        content=b'{"role": "user", "content": "hi"}',
        headers={"content-type": "application/vnd.api+json; charset=utf-8"},
    )
    assert response.status_code == 201


def test_a_bad_role_is_one_sentence_about_the_shape_meant(client):
    one = error(client.post("/v1/sessions/s/turns", json={"role": "robot", "content": "hi"}), 422)
    assert one == {
        "type": "validation_error",
        "message": "role: Input should be 'user', 'assistant', 'system' or 'tool'",
    }
    batch = error(
        client.post("/v1/sessions/s/turns", json={"turns": [{"role": "robot", "content": "x"}]}), 422
    )
    assert batch["message"] == "turns[0].role: Input should be 'user', 'assistant', 'system' or 'tool'"
    missing = error(client.post("/v1/sessions/s/turns", json={"turns": [{"role": "user"}]}), 422)
    assert missing["message"] == "turns[0].content: Field required"
    assert "TurnIn" not in missing["message"] and "TurnsIn" not in missing["message"]


def test_other_bodies_get_plain_messages(client):
    assert (
        error(client.post("/v1/sessions/s/turns", json=[1]), 422)["message"] == "body: expected a JSON object"
    )
    bad = client.post("/v1/sessions/s/turns", content=b"{bad", headers={"content-type": "application/json"})
    assert error(bad, 422)["message"].startswith("the body is not valid JSON (")
    client.post("/v1/sessions/s/turns", json={"role": "user", "content": "hi"})
    query = error(client.get("/v1/sessions/s/context", params={"budget_tokens": "lots"}), 422)
    assert query["type"] == "validation_error" and query["message"].startswith("query.budget_tokens:")


def test_415_is_documented_where_a_route_takes_a_body(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "415" in paths["/v1/compress"]["post"]["responses"]
    assert "415" in paths["/v1/recall"]["post"]["responses"]
    assert "415" in paths["/v1/sessions/{session}/turns"]["post"]["responses"]
