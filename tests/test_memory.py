"""Memory API plumbing through the TestDoubleBackend (reads the layout, not pixels).

End-to-end runs through a real OCR engine are in test_memory_ocr.py.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from optimem import InputError, Mode, OpticalMemory, PageNotFound
from optimem.aging.policies import NoAging

from .conftest import chat_turns


def memory(path, **kw):
    kw.setdefault("backend", "test-double")
    kw.setdefault("decode", "now")
    kw.setdefault("policy", NoAging())
    return OpticalMemory(path, **kw)


def test_add_compress_pages_recall_stats(db_path):
    mem = memory(db_path, keep_recent_turns=2, creation_mode="small")
    s = mem.session("thread-42")
    ids = s.add_turns(chat_turns(40))
    assert len(ids) == 40 and ids == sorted(ids)
    result = s.compress()
    assert result.created and not result.aged
    pages = s.pages()
    assert all(p.mode is Mode.SMALL and p.positions == 111 for p in pages)
    # the newest turns stay as text; every older turn is on a page
    paged = {t for p in pages for t in p.turn_ids}
    assert ids[-1] not in paged and ids[-2] not in paged
    assert pages[0].compression == pages[0].text_tokens / 111
    text = s.recall(pages[0].id)
    assert text.startswith("user: Turn 0:")
    st = s.stats()
    assert st.text_tokens == sum(t.text_tokens for t in s.turns())
    # pages cost their positions plus a caption of a dozen tokens, counted everywhere alike
    assert st.context_tokens == st.unpaged_tokens + st.page_tokens
    assert st.positions < st.page_tokens <= st.positions + 20 * len(pages)
    assert s.compress().tokens_after == st.context_tokens
    ctx = s.context(budget_tokens=st.context_tokens)
    assert not ctx.omitted_page_ids and not ctx.omitted_turn_ids and ctx.tokens == st.context_tokens
    assert st.per_mode[Mode.SMALL].pages == len(pages)
    assert st.savings == pytest.approx(st.text_tokens / st.context_tokens)


def test_partial_page_waits_unless_flushed(db_path):
    s = memory(db_path, keep_recent_turns=0).session("a")
    s.add_turn("user", "a short turn about OPS-1")
    assert s.compress().created == []
    assert len(s.compress(flush=True).created) == 1
    assert all(t.paged for t in s.turns())


def test_budget_policy_ages_oldest_pages(db_path):
    # two Base pages: 2 × (273 + caption) is over 420; one step down (111 + caption) fits
    mem = memory(db_path, policy="budget:420", keep_recent_turns=0, creation_mode="base")
    s = mem.session("a")
    s.add_turns(chat_turns(60))
    result = s.compress(flush=True)
    modes = [p.mode for p in s.pages()]
    assert result.aged
    assert modes == [Mode.SMALL, Mode.BASE]  # the oldest page steps down first
    assert result.tokens_after <= 420 and not result.over_budget
    assert result.tokens_after == s.stats().context_tokens
    # aged pages are resized, not re-typeset
    png = s.page_png(s.pages()[0].id)
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(png)).size == (640, 640)


def test_long_turn_spans_pages_and_recall_by_turn(db_path):
    s = memory(db_path, keep_recent_turns=0, creation_mode="tiny").session("a")
    tid = s.add_turn("user", "alpha beta gamma delta " * 2000)
    s.compress(flush=True)
    pages = s.pages()
    assert len(pages) > 2 and all(p.turn_ids == (tid,) for p in pages)
    r = s.recall_page(pages[1].id)
    assert set(r.turns) == {tid}
    # text tokens are split between the pages that hold pieces of the turn
    total = s.turns()[0].text_tokens
    assert abs(sum(p.text_tokens for p in pages) - total) <= len(pages) * 2


def test_search_works_after_archive_is_dropped(db_path):
    mem = memory(db_path, keep_recent_turns=0, archive=False)
    s = mem.session("a")
    s.add_turn("user", "Book the hotel in Chengdu near Kuanzhai Alley for ticket TRV-2291 " * 5)
    s.add_turn("assistant", "The database migration window is Saturday 02:00 UTC. " * 5)
    s.compress(flush=True)
    assert all(t.content is None for t in s.turns())  # archive dropped
    hits = s.recall(query="Chengdu hotel")
    assert hits and hits[0].score > 0.9
    assert "Chengdu" in hits[0].snippet
    assert s.recall(query="xylophone quartet") == []


def test_context_respects_budget_and_lists_what_it_left_out(db_path):
    s = memory(db_path, keep_recent_turns=4, creation_mode="tiny").session("a")
    s.add_turns(chat_turns(30))
    s.compress()
    n_pages = len(s.pages())
    ctx = s.context(budget_tokens=10_000)
    assert ctx.tokens <= 10_000 and not ctx.omitted_page_ids and not ctx.omitted_turn_ids
    kinds = [i.kind for i in ctx.items]
    unpaged = sum(not t.paged for t in s.turns())
    assert unpaged >= 4  # the newest turns, plus any waiting for a full page
    assert kinds == ["page"] * n_pages + ["text"] * unpaged  # pages first, then recent turns
    messages = ctx.to_messages()
    assert messages[0]["content"][1]["type"] == "image"
    assert messages[0]["content"][1]["mime_type"] == "image/png"
    small = s.context(budget_tokens=400)
    assert small.tokens <= 400
    assert small.omitted_page_ids  # nothing silently dropped: it says what did not fit
    with pytest.raises(InputError):
        s.context(budget_tokens=0)


def test_recall_errors(db_path):
    s = memory(db_path).session("a")
    with pytest.raises(PageNotFound):
        s.recall(12345)
    with pytest.raises(InputError):
        s.recall()
    with pytest.raises(InputError):
        s.recall(1, query="x")
    other = memory(db_path).session("b")
    other.add_turns(chat_turns(10))
    other.compress(flush=True)
    with pytest.raises(PageNotFound):  # pages of another session are not visible
        s.recall(other.pages()[0].id)


BAD = [
    (("user", ""), "empty"),
    (("user", " \n\t "), "whitespace-only"),
    (("robot", "hi"), "unknown role"),
    (("user", "bad \ud800 surrogate"), "lone surrogate"),
    (("user", None), "must be str"),
    (("user", "x" * 4_000_001), "exceeds"),
]


@pytest.mark.parametrize(("turn", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_input_is_refused_and_nothing_is_damaged(db_path, turn, message):
    s = memory(db_path, keep_recent_turns=0).session("a")
    s.add_turns(chat_turns(6))
    s.compress(flush=True)
    before = [(t.id, t.content) for t in s.turns()]
    with pytest.raises(InputError, match=message):
        s.add_turns([("user", "fine"), turn])  # all or nothing
    assert [(t.id, t.content) for t in s.turns()] == before
    assert mem_integrity(db_path) == []


def mem_integrity(path):
    from optimem.store import SQLiteStore as Store

    return Store(path).integrity_problems()


@pytest.mark.slow
def test_odd_but_valid_text_round_trips(db_path):
    s = memory(db_path, keep_recent_turns=0).session("a")
    odd = [
        "NUL\x00 and bell\x07 and escape\x1b[0m",
        "שלום עולם — مرحبا بالعالم",
        "emoji 😀👍 and flags 🇮🇪",
        "mixed 我们明天见 English",
        "a" * 1_000_000,
    ]
    ids = [s.add_turn("user", text) for text in odd]
    s.compress(flush=True)
    stored = {t.id: t.content for t in s.turns()}
    assert [stored[i] for i in ids] == odd  # the archive keeps every character exactly
    first = s.recall_page(s.pages()[0].id)
    assert "\x00" in first.text and "😀" in first.text  # placeholders are turned back on recall
    assert mem_integrity(db_path) == []


def test_options_are_validated(db_path):
    with pytest.raises(InputError):
        memory(db_path, keep_recent_turns=-1)
    with pytest.raises(InputError):
        memory(db_path, decode="sometimes")
    with pytest.raises(InputError):
        memory(db_path).session("")
    from optimem import UnknownBackend

    with pytest.raises(UnknownBackend, match="choose one of"):
        OpticalMemory(db_path, backend="nope")


def test_background_decoding_fills_the_cache(db_path):
    mem = OpticalMemory(db_path, backend="test-double", decode="background", keep_recent_turns=0)
    s = mem.session("a")
    s.add_turns(chat_turns(20))
    s.compress(flush=True)
    mem.wait(timeout=30)
    assert all(s.recall_page(p.id).cached for p in s.pages())
    mem.close()


_CHILD = textwrap.dedent(
    """
    import sys
    from optimem import OpticalMemory
    from optimem.aging.policies import BudgetPolicy
    mem = OpticalMemory(sys.argv[1], backend="test-double", decode="lazy",
                        policy=BudgetPolicy(max_tokens=300), keep_recent_turns=1, creation_mode="tiny")
    s = mem.session(sys.argv[2])
    words = " ".join(f"w{i} data" for i in range(1500))
    for i in range(1000):
        ids = s.add_turns([("user", f"{i} {words}"), ("assistant", f"ok {i} OPS-{i}")])
        print("committed", ids[-1], flush=True)
        s.compress()
    """
)


@pytest.mark.slow
def test_sigkill_during_compress_loses_nothing(db_path):
    committed = 0
    for delay in (0.0, 0.3, 0.7, 1.2):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(db_path), "s"],
            stdout=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        # count from the first acknowledged turn, not from process start: a loaded machine
        # may take seconds to import, and a kill before any write would test nothing
        first = proc.stdout.readline()
        assert first.startswith("committed"), first
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        committed = max(
            [committed] + [int(x.split()[1]) for x in [first, *out.splitlines()] if x.startswith("committed")]
        )
    s = memory(db_path).session("s")
    turns = s.turns()
    assert turns and turns[-1].id >= committed  # every acknowledged turn survived
    assert [t.seq for t in turns] == list(range(1, len(turns) + 1))
    assert mem_integrity(db_path) == []
    # pages reference existing turns only, and every paged turn is on a page
    turn_ids = {t.id for t in turns}
    for p in s.pages():
        assert set(p.turn_ids) <= turn_ids
    # and the database keeps working after the crash
    s.add_turns(chat_turns(4))
    s.compress(flush=True)
    assert mem_integrity(db_path) == []


_WRITER = textwrap.dedent(
    """
    import sys
    from optimem import OpticalMemory
    mem = OpticalMemory(sys.argv[1], backend="test-double", decode="lazy", keep_recent_turns=0)
    s = mem.session("shared")
    for i in range(40):
        s.add_turn("user", f"writer {sys.argv[2]} turn {i} " + "lorem ipsum " * 40)
        if i % 5 == 4:
            s.compress()
    print("done")
    """
)


@pytest.mark.slow
def test_two_processes_write_one_database(db_path):
    memory(db_path).session("shared")  # create the schema first
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db_path), w], stdout=subprocess.PIPE, text=True)
        for w in ("A", "B")
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    s = memory(db_path).session("shared")
    turns = s.turns()
    assert len(turns) == 80
    assert [t.seq for t in turns] == list(range(1, 81))
    for w in "AB":  # each writer's turns in its own order
        mine = [int(t.content.split()[3]) for t in turns if t.content.startswith(f"writer {w}")]
        assert mine == list(range(40))
    assert mem_integrity(db_path) == []
    # no turn is on two pages' worth of overlapping spans
    spans = {}
    for p in s.pages():
        for tid in p.turn_ids:
            spans[tid] = spans.get(tid, 0) + 1
    assert json.dumps(spans)  # serialisable; overlap checked by integrity above


_STUCK = textwrap.dedent(
    """
    import sys, time
    from optimem import OpticalMemory
    from optimem.store import SQLiteStore as Store
    real_insert = Store.insert_pages
    def insert_then_hang(self, *a, **kw):
        ids = real_insert(self, *a, **kw)   # rows written, transaction still open
        print("inside", ids, flush=True)
        time.sleep(60)
        return ids
    Store.insert_pages = insert_then_hang
    mem = OpticalMemory(sys.argv[1], backend="test-double", decode="lazy", keep_recent_turns=0)
    s = mem.session("s")
    s.compress(flush=True)
    """
)


@pytest.mark.slow  # a child process killed mid-transaction
def test_sigkill_inside_the_compress_transaction(db_path):
    s = memory(db_path, keep_recent_turns=0).session("s")
    ids = s.add_turns(chat_turns(30))
    proc = subprocess.Popen([sys.executable, "-c", _STUCK, str(db_path)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("inside")  # pages were written but not committed
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    s = memory(db_path, keep_recent_turns=0).session("s")
    assert [t.id for t in s.turns()] == ids
    assert s.pages() == [] and not any(t.paged for t in s.turns())  # no half-written page
    assert mem_integrity(db_path) == []
    s.compress(flush=True)  # and compress works afterwards
    assert s.pages()


def test_over_budget_pages_waiting_turns_before_aging(db_path):
    from optimem.pages.paging import PARTIAL_MIN_RATIO

    mem = memory(db_path, policy="budget:900", keep_recent_turns=2, creation_mode="large")
    s = mem.session("a")
    s.add_turns(chat_turns(14, words=60))  # ~1,400 text tokens: far from a full Large page
    result = s.compress()
    (page,) = s.pages()  # a partial page, because waiting text alone broke the budget
    assert page.text_tokens >= PARTIAL_MIN_RATIO * page.positions
    assert not result.aged and result.tokens_after <= 900
    # under budget, a partial page still waits for more turns
    relaxed = memory(db_path, policy="budget:100000", keep_recent_turns=2).session("b")
    relaxed.add_turns(chat_turns(14, words=60))
    assert relaxed.compress().created == []


def test_half_empty_last_page_is_reopened_for_new_turns(db_path):
    s = memory(db_path, keep_recent_turns=0, creation_mode="small").session("a")
    s.add_turns(chat_turns(3, words=40))
    (first,) = s.compress(flush=True).created  # a half-empty page
    s.add_turns(chat_turns(3, words=40))
    created = s.compress(flush=True).created
    assert created[0] == first  # the same id now holds old and new turns
    (page,) = s.pages()
    assert len(page.turn_ids) == 6
    assert s.recall(page.id).count("Turn ") == 6
    assert mem_integrity(db_path) == []


def test_an_aged_partial_last_page_is_typeset_again_from_the_archive(db_path):
    # under a tight budget a partial page is aged as soon as it is made; it still takes the
    # next turns (typeset again from the source, same id) instead of leaving a trail of small pages
    s = memory(db_path, keep_recent_turns=0, creation_mode="small", policy="budget:50").session("a")
    s.add_turns(chat_turns(3, words=40))
    s.compress(flush=True)
    (aged,) = s.pages()
    assert aged.mode is Mode.TINY
    s.add_turns(chat_turns(3, words=40))
    s.compress(flush=True)
    (page,) = s.pages()
    assert page.id == aged.id and len(page.turn_ids) == 6 and page.mode is Mode.TINY
    assert s.recall(page.id).count("Turn ") == 6
    assert mem_integrity(db_path) == []


def test_an_aged_page_without_its_archive_is_never_reopened(db_path):
    s = memory(
        db_path, keep_recent_turns=0, creation_mode="small", policy="budget:50", archive=False
    ).session("a")
    s.add_turns(chat_turns(3, words=40))
    s.compress(flush=True)
    (aged,) = s.pages()
    assert aged.mode is Mode.TINY
    s.add_turns(chat_turns(3, words=40))
    s.compress(flush=True)
    pages = s.pages()
    assert len(pages) == 2 and pages[0].id == aged.id and pages[0].turn_ids == aged.turn_ids


def test_ocr_failure_is_raised_on_recall_and_never_loses_data(db_path, caplog):
    from optimem import BackendError
    from optimem.backends.testing import TestDoubleBackend

    broken = TestDoubleBackend(fail=True)
    mem = OpticalMemory(db_path, backend=broken, decode="background", keep_recent_turns=0, policy=NoAging())
    s = mem.session("a")
    ids = s.add_turns(chat_turns(8))
    s.compress(flush=True)
    mem.wait(timeout=30)  # the background failure is logged, not raised into the caller
    assert "background decode of page 1 failed" in caplog.text
    with pytest.raises(BackendError, match="test double asked to fail"):
        s.recall(s.pages()[0].id)
    assert [t.id for t in s.turns()] == ids and s.pages()
    broken.fail = False  # the engine recovers: recall decodes then and caches
    assert s.recall_page(s.pages()[0].id).text.startswith("user: Turn 0")
    mem.close()


def test_stats_and_budget_count_what_the_backends_model_sees(db_path):
    from optimem.backends.testing import TestDoubleBackend

    class SeesV2(TestDoubleBackend):
        @classmethod
        def positions(cls, mode):
            return {Mode.GUNDAM: 833, Mode.LARGE: 257, Mode.BASE: 257, Mode.SMALL: 145, Mode.TINY: 145}[mode]

    mem = OpticalMemory(
        db_path,
        backend=SeesV2(),
        decode="now",
        keep_recent_turns=0,
        creation_mode="large",
        policy="budget:200",
    )
    s = mem.session("a")
    s.add_turns(chat_turns(20))
    s.compress(flush=True)
    pages = s.pages()
    assert {p.mode for p in pages} == {Mode.SMALL} and all(p.positions == 145 for p in pages)
    assert s.stats().positions == 145 * len(pages)
