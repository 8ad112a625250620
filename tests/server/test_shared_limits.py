"""Rate limits counted in the store, which every worker process and replica sees."""

from __future__ import annotations

import multiprocessing
import time

import httpx
import pytest

from optimem.server.errors import ApiError
from optimem.server.limits import SharedRateLimiter
from optimem.server.process import Server
from optimem.server.settings import Settings
from optimem.store import open_store

#: A fixed moment 30 s into a minute: no minute boundary inside a test.
MID_MINUTE = 1_700_000_010.0 + 30.0 - (1_700_000_010.0 % 60)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "limits.db")
    return request.getfixturevalue("postgres_url")


def test_the_store_counts_requests_per_key_and_minute(db_url):
    store = open_store(db_url)
    try:
        assert [store.count_request("k1", 100) for _ in range(3)] == [(1, 0), (2, 0), (3, 0)]
        assert store.count_request("k2", 100) == (1, 0)  # keys apart
        assert store.count_request("k1", 101) == (1, 3)  # the minute before comes back
        assert store.count_request("k1", 103) == (1, 0)  # older minutes are forgotten
    finally:
        store.close()


def _hammer(path: str, n: int, start, out) -> None:
    store = open_store(path)
    limiter = SharedRateLimiter(25, lambda: store.count_request)
    start.wait()
    allowed = 0
    for _ in range(n):
        try:
            limiter.hit("key-1", now=MID_MINUTE)
            allowed += 1
        except ApiError:
            pass
    store.close()
    out.put(allowed)


def test_two_processes_share_one_limit(tmp_path):
    path = str(tmp_path / "limits.db")
    open_store(path).close()  # migrated before the processes race
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(path, 20, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    allowed = [out.get(timeout=5), out.get(timeout=5)]
    assert sum(allowed) == 25, allowed  # counted per process it would be 40


def test_the_sliding_window_weighs_the_minute_before():
    counts = {"current": 0, "previous": 30}

    def count(key: str, minute: int) -> tuple[int, int]:
        counts["current"] += 1
        return counts["current"], counts["previous"]

    limiter = SharedRateLimiter(40, lambda: count)
    start = MID_MINUTE - 30  # the minute's first second: the previous minute weighs fully
    allowed = 0
    for _ in range(20):
        try:
            limiter.hit("k", now=start)
            allowed += 1
        except ApiError as exc:
            retry = int(exc.headers["Retry-After"])
    assert allowed == 10  # 30 of the minute before + 10 of this one
    assert 1 <= retry <= 60
    counts["current"] = 0
    assert SharedRateLimiter(40, lambda: count).hit("k", now=start + 59) is None  # that minute has slid out


def test_settings_share_the_count_where_several_processes_serve():
    assert not Settings(db="m.db").shared_rate_limit
    assert Settings(db="m.db", workers=2).shared_rate_limit
    assert Settings(db="postgresql://db/optimem").shared_rate_limit
    assert not Settings(db="m.db", workers=2, rate_per_minute=0).shared_rate_limit


@pytest.mark.slow  # starts `optimem serve` with two worker processes
def test_two_workers_of_optimem_serve_share_the_rate_limit(tmp_path):
    # the limit counts per minute: a run that crosses into the next minute starts again on a
    # fresh database (rare: the requests take a few seconds), instead of sleeping to avoid it
    for attempt in range(3):
        srv = Server(tmp_path / f"m{attempt}.db", "--workers", "2", "--rate-per-minute", "10").start()
        try:
            started = int(time.time() // 60)
            statuses = []
            for _ in range(24):
                with httpx.Client(base_url=srv.url, timeout=30) as c:  # a new connection each time
                    statuses.append(c.get("/v1/sessions").status_code)
        finally:
            srv.stop()
        if int(time.time() // 60) == started:
            break
        assert attempt < 2, "three runs in a row crossed a minute"
    assert statuses.count(200) == 10 and statuses.count(429) == 14, statuses
