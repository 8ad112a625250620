"""Crash safety and shutdown: SIGKILL mid-compress then restart; SIGTERM with recalls in flight (real OCR)."""

from __future__ import annotations

import contextlib
import io
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from optimem import OpticalMemory
from optimem.server.process import Server

from .conftest import words_turns


def _in_a_write_transaction(db: Path, timeout: float = 30.0) -> bool:
    """Wait until another process holds the database's write lock (compress's transaction)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        con = sqlite3.connect(db, timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
        except sqlite3.OperationalError:  # "database is locked": the server is mid-transaction
            return True
        finally:
            con.close()
        time.sleep(0.002)
    return False


@pytest.mark.slow
def test_sigkill_in_the_middle_of_a_compress_then_restart(tmp_path):
    """SIGKILL while compress holds its write transaction (seen from outside as SQLite's write
    lock), at two different depths into it; restart after each (test-double OCR, ~20 pages)."""
    db = tmp_path / "memory.db"
    srv = Server(db, "--decode", "lazy").start()
    acknowledged: list[int] = []
    try:
        for round, delay in enumerate((0.0, 0.3)):
            with httpx.Client(base_url=srv.url, timeout=60) as c:
                for k in range(3):
                    body = {"turns": words_turns(50, words=60, tag=f" round{round} batch{k}")}
                    r = c.post("/v1/sessions/crash/turns", json=body)
                    assert r.status_code == 201
                    acknowledged += r.json()["turn_ids"]
            answer: list[httpx.Response] = []

            def compress(answer=answer) -> None:
                with contextlib.suppress(httpx.TransportError):
                    body = {"session": "crash", "flush": True}
                    answer.append(httpx.post(srv.url + "/v1/compress", json=body, timeout=60))

            thread = threading.Thread(target=compress)
            thread.start()
            assert _in_a_write_transaction(db)
            time.sleep(delay)
            assert _in_a_write_transaction(db, timeout=0.5)
            srv.kill()
            thread.join(30)
            assert not answer, "the compress finished before the kill"
            srv.start()  # the same database, a fresh process
            _check_whole(srv, acknowledged)
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            assert c.post("/v1/compress", json={"session": "crash", "flush": True}).status_code == 200
            pages = c.get("/v1/sessions/crash/pages").json()["pages"]
            assert {t for p in pages for t in p["turn_ids"]} == set(acknowledged)  # compress resumes cleanly
    finally:
        srv.stop()


def _check_whole(srv: Server, acknowledged: list[int]) -> None:
    """Every acknowledged turn is stored; every committed page is whole and readable."""
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        turns = c.get("/v1/sessions/crash/turns", params={"limit": 10_000}).json()
        assert [t["id"] for t in turns["turns"]] == acknowledged
        contents = {t["id"]: t["content"] for t in turns["turns"]}
        for page in c.get("/v1/sessions/crash/pages").json()["pages"]:
            assert page["turn_ids"] and set(page["turn_ids"]) <= set(contents)
            png = c.get(f"/v1/sessions/crash/pages/{page['id']}.png").content
            Image.open(io.BytesIO(png)).verify()
            read = c.post("/v1/recall", json={"session": "crash", "page_ids": [page["id"]]}).json()["pages"][
                0
            ]
            assert read["text"] and set(read["turns"]) <= {str(t) for t in page["turn_ids"]}


def _in_flight(srv: Server) -> int:
    metrics = httpx.get(srv.url + "/metrics", timeout=5).text
    return int(
        float(next(x for x in metrics.splitlines() if x.startswith("optimem_http_in_flight ")).split()[1])
    )


@pytest.mark.slow
def test_sigterm_drains_recalls_in_flight_through_real_ocr(tmp_path):
    """The `cpu` backend (tesseract) decodes lazily, so each first recall runs real OCR."""
    srv = Server(tmp_path / "memory.db", "--decode", "lazy", backend="cpu").start(timeout=120)
    text = (
        "The database cutover for the billing cluster is scheduled for Saturday morning; "
        "ticket OPS-4821 tracks it and the owner is Priya from the platform team. "
    )
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        turns = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"{i}. {text * 2}"} for i in range(6)
        ]
        assert c.post("/v1/sessions/e2e/turns", json={"turns": turns}).status_code == 201
        created = c.post("/v1/compress", json={"session": "e2e", "flush": True}).json()["created"]
    assert len(created) == 1
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def recall(page_id: int) -> None:
        r = httpx.post(srv.url + "/v1/recall", json={"session": "e2e", "page_ids": [page_id]}, timeout=120)
        with lock:
            answers.append(r)

    threads = [threading.Thread(target=recall, args=(pid,)) for pid in created for _ in range(3)]
    for t in threads:
        t.start()
    while _in_flight(srv) < len(threads) + 1:  # every recall is inside the server (+ this scrape)
        time.sleep(0.01)
    assert httpx.get(srv.url + "/healthz", timeout=60).status_code == 200
    answered_before = len(answers)  # liveness answered while OCR recalls were still running
    status = srv.stop()  # SIGTERM while the recalls are running
    assert answered_before < len(threads), "recalls finished before the shutdown began"
    for t in threads:
        t.join(120)
    assert status in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has shut down cleanly
    assert len(answers) == len(threads) and all(r.status_code == 200 for r in answers), [
        r.text for r in answers
    ]
    for r in answers:
        page = r.json()["pages"][0]
        assert page["backend"] == "cpu"
        assert "cutover" in page["text"] and "OPS-4821" in page["text"]


@pytest.mark.slow
def test_sigterm_stops_promptly_and_the_next_start_reads_what_was_left(tmp_path):
    """A stop gives OCR in progress `shutdown_decode_s`, leaves the rest unread (nothing is
    lost: the pages are stored) and the next start reads them, saying so in its log."""
    db = tmp_path / "memory.db"
    srv = Server(db, "--decode", "background", backend="cpu").start(timeout=120)
    text = "Priya moves the billing cluster on Saturday; ticket OPS-4821 tracks the cutover. "
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        turns = [{"role": "user", "content": f"{i}. {text * 4}"} for i in range(40)]
        assert c.post("/v1/sessions/q/turns", json={"turns": turns}).status_code == 201
        created = c.post("/v1/compress", json={"session": "q", "flush": True}).json()["created"]
        queued = httpx.get(srv.url + "/readyz").json()["decode_queue"]
    assert len(created) >= 2 and queued >= 1  # OCR of the new pages is still under way
    assert srv.stop() in (0, -signal.SIGTERM)
    with OpticalMemory(db, backend="cpu", decode="lazy") as mem:
        unread = mem.decoder.unread(["q"])
    assert set(unread) <= set(created)
    again = Server(db, "--decode", "background", "--log-level", "info", backend="cpu").start(timeout=120)
    try:
        deadline = time.monotonic() + 300
        while httpx.get(again.url + "/readyz").json()["decode_queue"] and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        again.stop()
    if unread:
        assert f"resuming background OCR of {len(unread)} pages" in again.log.read_text()
    with OpticalMemory(db, backend="cpu", decode="lazy") as mem:
        session = mem.session("q")
        assert all(session.recall_page(pid).cached for pid in created)
