"""The PostgreSQL store and the decode queue against a real server the tests start: migrations,
tenants, two replicas on one session, a server restart, workers claiming batches, leases."""

import asyncio
import base64
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from optimem import OpticalMemory
from optimem.aging.policies import NoAging
from optimem.backends.testing import TestDoubleBackend
from optimem.store import migrate, open_store

from .conftest import chat_turns, wait_ready

pytest.importorskip("psycopg", reason="the postgres extra is not installed")

from optimem.store.postgres import PostgresStore


class CountingBackend(TestDoubleBackend):
    """The test double, remembering how many pages each decode_many call got."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def decode_many(self, pages):
        self.batches.append(len(pages))
        return super().decode_many(pages)


def memory(url, **kw):
    kw.setdefault("backend", "test-double")
    kw.setdefault("policy", NoAging())
    kw.setdefault("keep_recent_turns", 2)
    return OpticalMemory(url, **kw)


def paged_session(mem, session_id="acme/t1", turns=40):
    s = mem.session(session_id)
    s.add_turns(chat_turns(turns, words=150))
    return s, s.compress().created


def worker(url, backend, **kw):
    from optimem.workers.worker import Worker

    kw.setdefault("lease_s", 5.0)
    kw.setdefault("poll_s", 0.1)
    return Worker(url, backend, **kw)


def rows(store, sql, **params):
    from sqlalchemy import text

    with store.engine.begin() as conn:
        result = conn.execute(text(sql), params)
        return [r._asdict() for r in result] if result.returns_rows else []


def test_pg_migrations_run_once_and_a_newer_schema_is_refused(postgres_url):
    open_store(postgres_url).close()
    store = open_store(postgres_url)  # a second replica starting applies nothing twice
    assert store.schema_version() == migrate.head()
    assert rows(store, "SELECT version_num FROM alembic_version") == [{"version_num": migrate.head()}]
    rows(store, "UPDATE alembic_version SET version_num = '9999'")
    store.close()
    with pytest.raises(Exception, match="upgrade optimem"):
        open_store(postgres_url)


def test_replicas_starting_together_migrate_once(postgres_url):
    opened, errors = [], []

    def start():
        try:
            opened.append(open_store(postgres_url))
        except Exception as exc:  # pragma: no cover - what the test looks for
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(opened) == 3
    assert rows(opened[0], "SELECT version_num FROM alembic_version") == [{"version_num": migrate.head()}]
    for store in opened:
        store.close()


def test_a_database_of_optimem_0_1_upgrades_in_place_and_keeps_every_row(postgres_server):
    """The dump of a database optimem 0.1 wrote (tests/data/make_store_v0_1.py), restored, opens."""
    import psycopg

    url = postgres_server.create_database()
    dump = (Path(__file__).parent / "data" / "store_v0_1.pg.sql").read_text()
    dump = "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))  # psql commands
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(dump)
    with psycopg.connect(url) as conn:
        turns = conn.execute("SELECT id, session_id, seq, content FROM public.turns ORDER BY id").fetchall()
        pages = conn.execute("SELECT id, session_id, png FROM public.pages ORDER BY id").fetchall()
        strings = conn.execute(
            "SELECT page_id, kind, value FROM public.verbatim WHERE kind NOT IN ('lines', 'lexicon') ORDER BY id"
        ).fetchall()
        aids = dict(
            conn.execute(
                "SELECT kind, value FROM public.verbatim WHERE kind IN ('lines', 'lexicon')"
            ).fetchall()
        )
    assert turns and pages and strings and set(aids) == {"lines", "lexicon"}

    store = open_store(url)
    assert isinstance(store, PostgresStore) and store.schema_version() == migrate.head()
    got = [t for s in store.session_ids() for t in store.turns(s)]
    assert [(t.id, t.session_id, t.seq, t.content) for t in got] == [tuple(t) for t in turns]
    for pid, session_id, png in pages:
        assert store.page(session_id, pid).id == pid and store.page_blobs(pid).png == bytes(png)
        assert [(pid, v.kind, v.value) for v in store.verbatim(pid)] == [
            tuple(x) for x in strings if x[0] == pid
        ]
        moved = store.reading_aids(pid)
        assert moved is not None and moved.checks == base64.b64decode(aids["lines"])
        assert moved.lexicon == tuple(w for w in aids["lexicon"].split() if w != "\u2026")
    assert store.search_candidates("acme/thread-1", ["OPS-4821"], limit=5) == [pages[0][0]]
    assert store.integrity_problems() == []
    (tid,) = store.add_turns("acme/thread-1", [{"role": "user", "content": "after", "sha256": "x",
                                                "text_tokens": 1, "created_at": "2026-12-02T00:00:00+00:00"}])  # fmt: skip
    assert rows(store, "SELECT tenant FROM turns WHERE id = :t", t=tid) == [{"tenant": "acme"}]
    store.close()


@pytest.mark.slow
def test_every_row_carries_its_tenant(postgres_url):
    mem = memory(postgres_url, decode="now")
    paged_session(mem, "acme/t1")
    paged_session(mem, "plain", turns=20)
    store = mem.store
    for table in (
        "sessions",
        "turns",
        "pages",
        "page_spans",
        "verbatim",
        "reading_aids",
        "decoded",
        "page_index",
    ):
        found = rows(store, f"SELECT DISTINCT tenant FROM {table} ORDER BY tenant")
        assert [r["tenant"] for r in found] == ["", "acme"], table
    assert mem.sessions(prefix="acme/") == ["acme/t1"]
    mem.close()


@pytest.mark.slow
def test_two_replicas_compressing_one_session_serialise(postgres_url):
    replicas = [memory(postgres_url, decode="lazy") for _ in range(2)]
    sessions = [r.session("acme/shared") for r in replicas]
    sessions[0].add_turns(chat_turns(60, words=150))
    barrier = threading.Barrier(2)
    errors = []

    def compress(s):
        try:
            barrier.wait()
            s.compress(flush=True)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=compress, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store = replicas[0].store
    assert store.integrity_problems() == []  # no turn on two overlapping pages, none lost
    paged = {tid for p in sessions[0].pages() for tid in p.turn_ids}
    assert paged == {t.id for t in sessions[0].turns()}
    for r in replicas:
        r.close()


@pytest.mark.slow
def test_replicas_reconnect_after_a_postgres_restart(postgres_server, postgres_url):
    mem = memory(postgres_url, decode="now")
    s, created = paged_session(mem, turns=20)
    postgres_server.restart()
    # the pool checks each connection before use, so the first call after the restart works
    assert [p.id for p in s.pages()] == created
    s.add_turn("user", "after the restart")
    assert s.turns()[-1].content == "after the restart"
    mem.close()


def test_queue_mode_needs_postgresql(db_path):
    with pytest.raises(Exception, match="needs a PostgreSQL store"):
        OpticalMemory(db_path, decode="queue")


@pytest.mark.slow
def test_without_a_live_worker_recall_decodes_inline_and_says_so(postgres_url):
    mem = memory(postgres_url, decode="queue")
    s, created = paged_session(mem)
    assert mem.pending_decodes() == len(created)  # queued in PostgreSQL, not on a thread
    rec = s.recall_page(created[0])
    assert "no optimem worker is alive" in rec.note and rec.text.startswith("user: Turn 0")
    assert s.recall_page(created[0]).note is None  # said once; now read from the cache
    assert mem.wait(10)  # the rest are decoded inline too: nobody else would
    assert all(s.recall_page(p).cached for p in created)
    mem.close()


def test_worker_claims_batches_and_never_decodes_a_page_twice(postgres_url):
    mem = memory(postgres_url, decode="queue")
    s, created = paged_session(mem)
    mem.decoder.schedule(created)  # queued again while queued: the dedupe key keeps one job each
    assert mem.pending_decodes() == len(created) >= 5
    backend = CountingBackend()
    w = worker(postgres_url, backend, batch=2)
    stats = asyncio.run(w.run(idle_exit_s=0.3))
    assert stats.pages == len(created) and backend.batches == [2] * (len(created) // 2) + [1] * (
        len(created) % 2
    )
    assert mem.pending_decodes() == 0
    assert all(s.recall_page(p).cached for p in created)
    mem.decoder.schedule(created)  # decoded already, for this fingerprint: nothing is decoded again
    stats = asyncio.run(w.run(idle_exit_s=0.3))
    assert backend.calls == len(created) and mem.pending_decodes() == 0
    w.close()
    mem.close()


@pytest.mark.slow
def test_a_page_the_workers_cannot_decode_is_decoded_inline_by_recall(postgres_url):
    mem = memory(postgres_url, decode="queue")
    s, created = paged_session(mem, turns=20)
    w = worker(postgres_url, TestDoubleBackend(fail=True), attempts=1)

    def run_worker():
        asyncio.run(w.run(idle_exit_s=3))

    thread = threading.Thread(target=run_worker)
    thread.start()
    try:
        while not w.ready.is_set():
            time.sleep(0.01)
        rec = s.recall_page(created[0])  # waits for the job; it fails; recall reads it itself
    finally:
        w.stop.set()
        thread.join()
        w.close()
    assert (
        rec.note == "decoded inline by this process: the workers failed to decode it (backend 'test-double')"
    )
    assert w.stats.failed >= 1 and rec.text.startswith("user: Turn 0")
    mem.close()


@pytest.mark.slow
def test_a_dead_workers_jobs_are_claimed_again_after_the_lease(postgres_url):
    import psycopg

    from optimem.workers.queue import WorkerQueue

    mem = memory(postgres_url, decode="queue")
    s, created = paged_session(mem, turns=20)

    async def claim_and_die():
        async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as conn:
            dead = WorkerQueue(conn, "test-double", "test-double", batch=10)
            return await dead.claim(lease_s=60)

    assert len(asyncio.run(claim_and_die())) == len(created)
    backend = CountingBackend()
    w = worker(postgres_url, backend, lease_s=60)
    assert asyncio.run(w.run(idle_exit_s=0.3)).pages == 0  # the dead one's lease still runs
    w.lease_s = 0.5
    time.sleep(0.6)  # ...and now it has run out
    assert asyncio.run(w.run(max_pages=len(created), idle_exit_s=5)).pages == len(created)
    assert all(s.recall_page(p).cached for p in created) and mem.pending_decodes() == 0
    w.close()
    mem.close()


@pytest.mark.slow
def test_recall_waits_for_a_real_cpu_worker(postgres_url):
    mem = memory(postgres_url, backend="cpu", decode="queue")
    s = mem.session("acme/cpu")
    s.add_turns([("user", "The cutover of the orders database is on Saturday, ticket OPS-4821."),
                 ("assistant", "Noted: Saturday, OPS-4821. I will draft the runbook tonight.")])  # fmt: skip
    (pid,) = s.compress(flush=True).created
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optimem.cli",
            "worker",
            "--db",
            postgres_url,
            "--backend",
            "cpu",
            "--max-pages",
            "1",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_ready(proc)
        rec = s.recall_page(pid)  # waits for the worker's decode
        assert proc.wait(timeout=120) == 0
    finally:
        proc.kill()
    assert rec.note is None and rec.backend == "cpu"
    assert "OPS-4821" in rec.text and "cutover" in rec.text.lower()
    mem.close()


@pytest.mark.slow
def test_search_finds_ocr_garbled_words_through_pg_trgm(postgresql_store):
    from optimem.layout import LineBox, Span
    from optimem.modes import Mode
    from optimem.store import DecodedRecord, NewPage

    store = postgresql_store
    texts = ["the cutovr is on Saturday", "dinner in Chengdu", "replication lag spike"]
    for i, text in enumerate(texts):
        (tid,) = store.add_turns("s", [{"role": "user", "content": text, "sha256": "x", "text_tokens": 4,
                                        "created_at": "2026-01-01T00:00:00+00:00"}])  # fmt: skip
        page = NewPage(Mode.SMALL, 640, 8, False, b"png", [LineBox(0, 0, 9, 9, text, tid, 0, len(text))],
                       [Span(tid, 0, len(text))], 4, len(text), [], i + 1, "2026-01-01T00:00:00+00:00")  # fmt: skip
        with store.transaction():
            (pid,) = store.insert_pages("s", [page], [tid])
        store.put_decoded(DecodedRecord(pid, Mode.SMALL, "cpu", "fp", text, None, 1.0, 0.1), index_text=text)
    first, *_ = store.search_candidates("s", ["cutover"], limit=5)  # no substring: a close word
    assert store.indexed_text([first])[first] == texts[0]
    assert store.search_candidates("s", ["chengdu", "dinner"], limit=1) == [first + 1]
    assert store.search_candidates("s", ["xylophone"], limit=5) == []


def test_worker_command_needs_a_postgresql_url(tmp_path):
    from click.testing import CliRunner

    from optimem.cli.main import main

    out = CliRunner().invoke(main, ["worker", "--db", str(tmp_path / "m.db")])
    assert out.exit_code == 2 and "workers share a PostgreSQL store" in out.output


def test_serve_takes_decode_queue_only_with_postgresql():
    from optimem.server.settings import Settings

    with pytest.raises(ValueError, match="needs a PostgreSQL database"):
        Settings(decode="queue").check()
    Settings(decode="queue", db="postgresql://u@127.0.0.1/db").check()
