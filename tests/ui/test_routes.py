"""Viewer plumbing in process (FastAPI's TestClient, test-double backend): no-auth mode, rate limit, bad input."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from optimem import OpticalMemory
from optimem.server.main import create_app
from optimem.server.settings import Settings


@pytest.fixture
def client(tmp_path):
    def make(**settings) -> TestClient:
        mem = OpticalMemory(tmp_path / "m.db", backend="test-double", decode="now")
        mem.session("s1").add_turns([("user", "hello there"), ("assistant", "hi, OPS-4821")])
        mem.session("s1").compress(flush=True)
        mem.session("s2").add_turn("user", "a naive time", created_at="2024-05-01T10:00:00")
        app = create_app(Settings(db=str(tmp_path / "m.db"), backend="test-double", **settings), memory=mem)
        return TestClient(app)

    return make


def test_without_keys_the_local_user_sees_every_session_and_there_is_no_sign_in(client):
    with client() as c:
        assert c.get("/ui/login", follow_redirects=False).headers["location"] == "/ui/"
        page = c.get("/ui/")
        assert page.status_code == 200 and 'data-session="s1"' in page.text
        assert 'data-session="s2"' in page.text  # a naive created_at sorts with aware ones
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        assert c.get("/ui/s/s1/pages/1.png").headers["content-type"] == "image/png"


def test_rate_limited_pages_answer_429_with_retry_after(client):
    with client(rate_per_minute=2) as c:
        assert c.get("/ui/").status_code == 200
        assert c.get("/ui/").status_code == 200
        limited = c.get("/ui/")
        assert limited.status_code == 429 and "retry-after" in limited.headers
        assert "text/html" in limited.headers["content-type"]
        assert c.get("/ui/s/s1/pages/1.png").status_code == 200  # thumbnails are not rate-limited


def test_bad_input_is_a_page_with_the_status_not_a_crash(client):
    with client() as c:
        assert c.get("/ui/s/bad%20name").status_code == 422
        assert c.get("/ui/s/s1/pages/0").status_code == 422
        assert c.get("/ui/s/s1/pages/99").status_code == 404
        assert c.get("/ui/s/s1?format=xml").status_code == 422
        twin = c.get("/ui/s/s1/pages/99?format=json")
        assert twin.json()["error"]["type"] == "page_not_found"
        assert c.get("/ui/login?next=//evil.example", follow_redirects=False).headers["location"] == "/ui/"


def test_read_again_without_a_key_signs_in_and_returns_to_the_page(tmp_path):
    from optimem.server.auth import KeysFile

    keys = tmp_path / "keys.json"
    key = KeysFile(keys).add("acme")[1]
    mem = OpticalMemory(tmp_path / "m.db", backend="test-double", decode="now")
    mem.session("acme/s1").add_turns([("user", "hello there"), ("assistant", "hi")])
    mem.session("acme/s1").compress(flush=True)
    app = create_app(Settings(db=str(tmp_path / "m.db"), backend="test-double", keys=str(keys)), memory=mem)
    with TestClient(app) as c:
        r = c.post("/ui/s/s1/pages/1/read", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/s/s1/pages/1"
        signed = c.post("/ui/login", data={"key": key, "next": "/ui/s/s1/pages/1"}, follow_redirects=False)
        assert signed.headers["location"] == "/ui/s/s1/pages/1"
        assert "httponly" in signed.headers["set-cookie"].lower()
        assert c.get("/ui/s/s1/pages/1").status_code == 200
