"""schemathesis against the service's own OpenAPI document: no 5xx, every response as documented.

Bounded for CI: EXAMPLES generated cases per operation (14 operations), through a real server.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from server import Settings, create_app
from server.process import Server

from .conftest import METRICS_KEY, auth

EXAMPLES = int(os.environ.get("OPTIMEM_FUZZ_EXAMPLES", "200"))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, keys):
    db = tmp_path_factory.mktemp("fuzz") / "memory.db"
    srv = Server(
        db,
        "--keys",
        keys["file"],
        "--rate-per-minute",
        "0",
        "--decode",
        "now",
        env={"OPTIMEM_METRICS_KEY": METRICS_KEY},
    ).start()
    with httpx.Client(base_url=srv.url, headers=auth(keys["acme"]), timeout=60) as c:
        # the session the examples name, with pages, so generated requests reach real data
        c.post(
            "/v1/sessions/thread-42/turns",
            json={"turns": [{"role": "user", "content": f"turn {i} OPS-{i}" * 40} for i in range(12)]},
        )
        c.post("/v1/compress", json={"session": "thread-42", "flush": True})
    yield srv
    srv.stop()


def _document() -> dict:
    """The OpenAPI document the served app publishes (checked against /openapi.json below)."""
    return create_app(Settings(backend="test-double", keys="unused-keys.json")).openapi()


schema = schemathesis.openapi.from_dict(_document())
#: Stands for acme's key while cases are generated (some at collection, before any server runs).
PLACEHOLDER = "Bearer acme-key"


@schema.auth()
class _Bearer:
    """A key on every case, except where schemathesis drops it on purpose (then 401 is right)."""

    def get(self, case, context) -> str:
        return PLACEHOLDER

    def set(self, case, data, context) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


def test_the_fuzzed_document_is_the_served_one(fuzzed):
    assert httpx.get(fuzzed.url + "/openapi.json").json() == _document()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_openapi_contract(case, fuzzed, keys):
    if (case.headers or {}).get("Authorization") == PLACEHOLDER:
        case.headers["Authorization"] = f"Bearer {keys['acme']}"
    case.call_and_validate(base_url=fuzzed.url, timeout=60)


def test_the_fuzzing_reached_the_handlers(fuzzed):
    """Runs after the fuzzing: it was not all 401s and 422s."""
    text = httpx.get(fuzzed.url + "/metrics", headers=auth(METRICS_KEY)).text
    for route, status in (
        ("/v1/sessions/{session}/turns", "201"),
        ("/v1/compress", "200"),
        ("/v1/recall", "200"),
        ("/v1/sessions/{session}/context", "200"),
        ("/v1/sessions/{session}", "200"),
    ):
        seen = [line for line in text.splitlines() if f'route="{route}"' in line]
        assert f'route="{route}",status="{status}"' in text, seen
    assert 'status="5' not in text, [line for line in text.splitlines() if 'status="5' in line]
