"""Background reading in order of need: priority, urgent reads first, deletion, shutdown, resume."""

from __future__ import annotations

import threading
import time

import pytest

from optimem import OpticalMemory
from optimem.backends.testing import TestDoubleBackend
from optimem.reading.page_queue import BACKGROUND, URGENT, PageQueue


class Gate:
    """A read function that records its order and blocks each read until released."""

    def __init__(self, fail: set[int] | None = None) -> None:
        self.order: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.fail = fail or set()

    def __call__(self, page_id: int) -> None:
        self.order.append(page_id)
        self.started.set()
        assert self.release.wait(10)
        if page_id in self.fail:
            raise RuntimeError(f"page {page_id} is unreadable")


def test_the_most_wanted_page_is_read_next():
    gate = Gate()
    queue = PageQueue(gate)
    queue.submit([1, 2, 3, 4], BACKGROUND)
    assert gate.started.wait(5)  # page 1 is running; 2, 3, 4 wait
    (urgent,) = queue.submit([4], URGENT)
    gate.release.set()
    urgent.result(5)
    assert queue.wait(5)
    assert gate.order == [1, 4, 2, 3]
    queue.close()


def test_a_page_is_queued_once_and_asking_again_returns_the_same_future():
    gate = Gate()
    queue = PageQueue(gate)
    first = queue.submit([7, 8])
    again = queue.submit([8])
    assert again[0] is first[1]
    gate.release.set()
    assert queue.wait(5) and gate.order == [7, 8]
    queue.close()


def test_workers_start_nothing_new_while_a_caller_reads_urgently():
    gate = Gate()
    gate.release.set()
    queue = PageQueue(gate)
    with queue.urgent():
        futures = queue.submit([1, 2])
        time.sleep(0.2)
        assert gate.order == [] and not any(f.done() for f in futures)
    assert queue.wait(5) and gate.order == [1, 2]
    queue.close()


def test_a_page_taken_for_an_urgent_read_leaves_the_queue():
    gate = Gate()
    queue = PageQueue(gate)
    queue.submit([1, 2, 3])
    assert gate.started.wait(5)
    assert queue.take(1) is not None  # running: the caller waits for it
    assert queue.take(3) is None  # queued: the caller reads it itself
    queue.finished(3)
    gate.release.set()
    assert queue.wait(5)
    assert gate.order == [1, 2]
    queue.close()


def test_discarded_pages_are_never_read_and_their_futures_cancelled():
    gate = Gate()
    queue = PageQueue(gate)
    futures = queue.submit([1, 2, 3])
    assert gate.started.wait(5)
    assert queue.discard([2, 3, 99]) == 2
    gate.release.set()
    assert queue.wait(5)
    assert gate.order == [1] and futures[1].cancelled() and futures[2].cancelled()
    queue.close()


def test_a_failed_read_settles_its_future_and_the_worker_goes_on():
    gate = Gate(fail={1})
    gate.release.set()
    queue = PageQueue(gate)
    bad, good = queue.submit([1, 2])
    with pytest.raises(RuntimeError, match="page 1 is unreadable"):
        bad.result(5)
    good.result(5)
    queue.close()


def test_close_stops_within_its_timeout_and_names_the_pages_left():
    gate = Gate()
    queue = PageQueue(gate)
    queue.submit([1, 2, 3])
    assert gate.started.wait(5)
    t0 = time.monotonic()
    left = queue.close(timeout=0.3)
    assert time.monotonic() - t0 < 2
    assert sorted(left) == [1, 2, 3]  # 1 still running at the timeout, 2 and 3 never started
    gate.release.set()
    with pytest.raises(RuntimeError, match="closed"):
        queue.submit([4])


def _paged_memory(path, backend, **kw):
    mem = OpticalMemory(path, backend=backend, decode="background", keep_recent_turns=0, policy="none", **kw)
    s = mem.session("t/queue")
    s.add_turns([("user", " ".join(f"w{i}x{j}" for j in range(160))) for i in range(36)])
    return mem, s


class SlowDouble(TestDoubleBackend):
    """The test double, taking `delay` seconds a page (a stand-in for OCR time in plumbing)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.read: list[int] = []

    def decode(self, page):
        time.sleep(self.delay)
        self.read.append(page.lines[0].turn_id)
        return super().decode(page)


@pytest.mark.slow
def test_a_recall_reads_its_page_ahead_of_the_background_queue(db_path):
    backend = SlowDouble(0.3)
    mem, s = _paged_memory(db_path, backend)
    s.compress(flush=True)
    pages = s.pages()
    assert len(pages) >= 4 and mem.pending_decodes() >= 3
    t0 = time.monotonic()
    recall = s.recall_page(pages[-1].id)
    waited = time.monotonic() - t0
    assert recall.text and waited < 0.3 * (len(pages) - 1)  # not behind every page queued first
    assert mem.wait(30)
    mem.close()


def test_deleting_a_session_drops_its_pages_from_the_queue(db_path):
    backend = SlowDouble(0.3)
    mem, s = _paged_memory(db_path, backend)
    s.compress(flush=True)
    n = len(s.pages())
    s.delete()
    assert mem.wait(30)
    assert backend.calls < n  # at most the page running at the delete was read
    mem.close()


def test_a_stop_leaves_unread_pages_that_the_next_start_resumes(db_path):
    mem, s = _paged_memory(db_path, SlowDouble(0.5))
    s.compress(flush=True)
    n = len(s.pages())
    t0 = time.monotonic()
    mem.close(timeout=0.1)
    assert time.monotonic() - t0 < 3
    again = OpticalMemory(db_path, backend=TestDoubleBackend(), decode="background", policy="none")
    assert 0 < len(again.decoder.unread(["t/queue"])) <= n
    assert again.resume_decoding() > 0
    assert again.wait(30)
    assert again.decoder.unread(["t/queue"]) == []
    assert again.resume_decoding() == 0
    again.close()


def test_decode_workers_must_be_a_positive_integer(db_path):
    from optimem.errors import InputError

    with pytest.raises(InputError, match="decode_workers"):
        OpticalMemory(db_path, backend="test-double", decode_workers=0)


def test_background_retries_of_a_failing_page_back_off_then_stop(db_path, monkeypatch, caplog):
    from optimem.errors import DecodeError
    from optimem.reading import decoding

    monkeypatch.setattr(decoding, "RETRY_AFTER_S", (0.0, 60.0))
    backend = TestDoubleBackend(fail=True)
    mem = OpticalMemory(db_path, backend=backend, decode="background", keep_recent_turns=0, policy="none")
    s = mem.session("t/fail")
    s.add_turns([("user", "the ticket is OPS-4821"), ("assistant", "noted")])
    s.compress(flush=True)
    (page,) = s.pages()
    assert mem.wait(10) and backend.calls == 1
    mem.decoder.schedule([page.id])  # first retry: due at once
    assert mem.wait(10) and backend.calls == 2
    mem.decoder.schedule([page.id])  # second retry: not due for a minute
    assert mem.wait(10) and backend.calls == 2 and s.stats().failed_pages == ()
    assert "background retry in 60 s" in caplog.text
    with pytest.raises(DecodeError, match=f"page {page.id}") as err:
        s.recall_page(page.id)  # a recall still tries, and names the page
    assert err.value.page_id == page.id
    mem.decoder._failures[page.id] = (2, 0.0)  # the minute has passed
    mem.decoder.schedule([page.id])
    assert mem.wait(10) and backend.calls == 4
    assert s.stats().failed_pages == (page.id,)
    mem.decoder.schedule([page.id])  # given up: no more background tries
    assert mem.wait(10) and backend.calls == 4
    backend.fail = False
    assert s.recall_page(page.id).text  # a recall that works clears the failure
    assert s.stats().failed_pages == ()
    mem.close()
