"""GET /metrics: open without keys (loopback, like the whole service); with keys only the metrics key reads it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from optimem import OpticalMemory
from optimem.server.auth import KeysFile
from optimem.server.main import create_app
from optimem.server.settings import Settings

from .conftest import auth

METRICS = "m" * 24


@pytest.fixture
def make(tmp_path):
    keys_file = KeysFile(tmp_path / "keys.json")
    _, key = keys_file.add("acme")

    def client(**settings) -> tuple[TestClient, str]:
        mem = OpticalMemory(tmp_path / "m.db", backend="test-double", decode="now")
        app = create_app(Settings(db=str(tmp_path / "m.db"), backend="test-double", **settings), memory=mem)
        return TestClient(app), key

    return client, str(keys_file.path)


def test_without_keys_metrics_are_open(make):
    client, _ = make
    c, _ = client()
    with c:
        assert c.get("/metrics").status_code == 200


def test_with_keys_metrics_need_the_metrics_key(make):
    client, keys = make
    c, tenant_key = client(keys=keys, metrics_key=METRICS)
    with c:
        c.post(
            "/v1/sessions/private-thread/turns",
            json={"role": "user", "content": "hi"},
            headers=auth(tenant_key),
        )
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers=auth(tenant_key)).status_code == 401
        assert c.get("/metrics", headers=auth(METRICS[:-1] + "x")).status_code == 401
        ok = c.get("/metrics", headers=auth(METRICS))
        assert ok.status_code == 200 and 'route="/v1/sessions/{session}/turns"' in ok.text
        assert "private-thread" not in ok.text and "acme" not in ok.text


def test_with_keys_and_no_metrics_key_metrics_are_off(make):
    client, keys = make
    c, tenant_key = client(keys=keys)
    with c:
        off = c.get("/metrics", headers=auth(tenant_key))
        assert off.status_code == 403 and off.json()["error"]["type"] == "forbidden"


def test_a_short_metrics_key_is_refused():
    with pytest.raises(ValueError, match="at least 16"):
        Settings(keys="k.json", metrics_key="short").check()
