"""schemathesis against the service's own OpenAPI document: no 5xx, every response as documented.

Bounded for CI: EXAMPLES generated cases per operation (14 operations), through a real server.
schemathesis and hypothesis keep their caches in the working folder (`.schemathesis/`,
`.hypothesis/`): these tests run in a temporary one, so nothing is written into the checkout.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from optimem.server import Settings, create_app
from optimem.server.process import Server

from .conftest import METRICS_KEY, auth

pytestmark = pytest.mark.slow  # every test here; see ALL_SLOW in tests/conftest.py
EXAMPLES = int(os.environ.get("OPTIMEM_FUZZ_EXAMPLES", "200"))


@pytest.fixture(autouse=True, scope="module")
def _outside_the_checkout(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("fuzz-cwd"))
        yield


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
    database=None,
)
def test_openapi_contract(case, fuzzed, keys):
    if (case.headers or {}).get("Authorization") == PLACEHOLDER:
        case.headers["Authorization"] = f"Bearer {keys['acme']}"
    case.call_and_validate(base_url=fuzzed.url, timeout=60)


def _served(url: str) -> dict[tuple[str, str], float]:
    """Requests served so far, by (route, status), from the server's own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", headers=auth(METRICS_KEY)).text):
        for sample in family.samples:
            if sample.name == "optimem_http_requests_total":
                key = (sample.labels["route"], sample.labels["status"])
                counts[key] = counts.get(key, 0) + sample.value
    return counts


def test_generated_cases_reach_the_handlers(fuzzed, keys):
    """Generated cases (not the fixture's own set-up requests) get past auth and validation:
    the fuzzing is not all 401s and 422s. Runs its own cases, so it holds in any order."""
    before = _served(fuzzed.url)
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case):
            if (case.headers or {}).get("Authorization") == PLACEHOLDER:
                case.headers["Authorization"] = f"Bearer {keys['acme']}"
            case.call(base_url=fuzzed.url, timeout=60)

        call()
    after = _served(fuzzed.url)
    grew = {key for key, n in after.items() if n > before.get(key, 0)}
    for route, status in (
        ("/v1/sessions/{session}/turns", "201"),
        ("/v1/compress", "200"),
        ("/v1/recall", "200"),
        ("/v1/sessions/{session}/context", "200"),
        ("/v1/sessions/{session}", "200"),
    ):
        assert (route, status) in grew, sorted(grew)
    assert not [key for key in after if key[1].startswith("5")]
