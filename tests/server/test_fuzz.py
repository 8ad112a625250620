"""schemathesis against the service's own OpenAPI document: no 5xx, every response as documented.

Bounded for CI: EXAMPLES generated cases per operation (14 operations), through a real server.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from .conftest import Server, auth

EXAMPLES = 40


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, keys):
    db = tmp_path_factory.mktemp("fuzz") / "memory.db"
    srv = Server(db, "--keys", keys["file"], "--rate-per-minute", "0", "--decode", "now").start()
    with httpx.Client(base_url=srv.url, headers=auth(keys["acme"]), timeout=60) as c:
        # a session with pages, so generated ids sometimes hit something real
        c.post(
            "/v1/sessions/a/turns",
            json={"turns": [{"role": "user", "content": f"turn {i} OPS-{i}" * 40} for i in range(12)]},
        )
        c.post("/v1/compress", json={"session": "a", "flush": True})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(fuzzed):
    schema = schemathesis.openapi.from_url(fuzzed.url + "/openapi.json")
    schema.config.update(base_url=fuzzed.url)
    return schema


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_openapi_contract(case, keys):
    case.call_and_validate(headers=auth(keys["acme"]), timeout=60)
