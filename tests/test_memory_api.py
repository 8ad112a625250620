"""The seams the interfaces stand on: JSON records, external ids, session lifecycle, one cost
authority, search without OCR on the query path, async twins, wait(). Plumbing through the
TestDoubleBackend (it reads the layout, not pixels); real OCR runs are in test_memory_ocr.py."""

import asyncio
import inspect
import json
import logging
import threading

import pytest

from optimem import (
    Context,
    Deleted,
    DuplicateExternalId,
    InputError,
    Mode,
    OpticalMemory,
    Page,
    Recall,
    RecallHit,
    Session,
    SessionNotFound,
    Stats,
    Turn,
)
from optimem.aging.policies import NoAging
from optimem.backends import get_backend
from optimem.backends.testing import TestDoubleBackend
from optimem.records import CompressResult

from .conftest import chat_turns


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def db_path(request, tmp_path):
    """Every seam runs on both engines: a SQLite file, and a fresh database on a real PostgreSQL."""
    if request.param == "sqlite":
        return tmp_path / "memory.db"
    return request.getfixturevalue("postgres_url")


def memory(path, **kw):
    kw.setdefault("backend", "test-double")
    kw.setdefault("decode", "now")
    kw.setdefault("policy", NoAging())
    return OpticalMemory(path, **kw)


def test_every_record_round_trips_through_json(db_path):
    s = memory(db_path, keep_recent_turns=2).session("a")
    s.add_turn("user", "Cutover is Saturday, ticket OPS-4821.", name="ana", metadata={"k": [1, 2]})
    s.add_turns(chat_turns(30))
    result = s.compress()
    page = s.pages()[0]
    records = [
        s.turns()[0],
        page,
        result,
        s.recall_page(page.id),
        s.search("migration replica")[0],
        s.stats(),
        s.context(budget_tokens=2000),
    ]
    for record, cls in zip(
        records, [Turn, Page, CompressResult, Recall, RecallHit, Stats, Context], strict=True
    ):
        data = json.loads(json.dumps(record.to_dict()))  # plain JSON, no custom encoder
        assert cls.from_dict(data) == record, cls.__name__
    turn = s.turns()[0].to_dict()
    assert (
        turn["name"] == "ana" and turn["metadata"] == {"k": [1, 2]} and turn["created_at"].endswith("+00:00")
    )
    assert page.to_dict()["mode"] == "small" and page.to_dict()["compression"] == round(page.compression, 3)
    ctx = s.context(budget_tokens=2000).to_dict()
    image_blocks = [b for m in ctx["messages"] if isinstance(m["content"], list) for b in m["content"]]
    assert {"type", "base64", "mime_type"} <= set(image_blocks[1]) and ctx["tokens"] <= 2000


def test_external_ids_add_only_what_is_new(db_path):
    s = memory(db_path).session("a")
    first = s.add_turns([{"role": "user", "content": "one", "external_id": "m1"}, ("assistant", "two")])
    assert s.lookup_external_ids(["m1", "m9"]) == {"m1": first[0]}
    with pytest.raises(DuplicateExternalId, match="already stored"):
        s.add_turns(
            [
                {"role": "user", "content": "three", "external_id": "m3"},
                {"role": "user", "content": "x", "external_id": "m1"},
            ]
        )
    assert len(s.turns()) == 2  # all or nothing
    again = s.add_turns(
        [
            {"role": "user", "content": "one", "external_id": "m1"},
            {"role": "user", "content": "new", "external_id": "m3"},
        ],
        skip_existing=True,
    )
    assert again[0] == first[0] and again[1] > first[1]
    assert [t.external_id for t in s.turns()] == ["m1", None, "m3"]
    with pytest.raises(InputError, match="twice in one batch"):
        s.add_turns([{"role": "user", "content": "a", "external_id": "z"}] * 2)
    with pytest.raises(InputError, match="external_id must be"):
        s.add_turn("user", "a", external_id="")


def test_delete_removes_everything_of_one_session(db_path):
    mem = memory(db_path, keep_recent_turns=0)
    a, b = mem.session("a"), mem.session("b")
    for s in (a, b):
        s.add_turns(chat_turns(20))
        s.compress(flush=True)
    assert mem.has_session("a") and a.exists() and not mem.has_session("zz")
    pages = len(a.pages())
    deleted = a.delete()
    assert deleted == Deleted("a", turns=20, pages=pages, decoded=pages, verbatim=deleted.verbatim)
    assert deleted.verbatim > 0
    assert not a.exists() and mem.sessions() == ["b"] and len(b.pages()) > 0
    assert a.search("migration") == [] and a.turns() == []
    with pytest.raises(SessionNotFound):
        a.delete()
    assert mem.store.integrity_problems() == []


def test_context_and_stats_and_compress_price_alike(db_path):
    s = memory(db_path, keep_recent_turns=3, policy="budget:1000", creation_mode="base").session("a")
    s.add_turns(chat_turns(50))
    result = s.compress()
    st = s.stats()
    assert result.tokens_after == st.context_tokens and not result.over_budget
    ctx = s.context(budget_tokens=st.context_tokens)
    assert ctx.tokens == st.context_tokens and not ctx.omitted_page_ids and not ctx.omitted_turn_ids
    tight = s.context(budget_tokens=st.context_tokens - 1)
    assert tight.omitted_page_ids  # one token less leaves the oldest page out, and says so
    # other consumers price the same pages by their providers' rules, everywhere alike
    gem = s.stats(consumer="gemini")
    assert gem.positions == 4 * 258 * len(s.pages())  # a 1024 px Base page is 4 Gemini tiles
    assert s.context(budget_tokens=gem.context_tokens, consumer="gemini").omitted_page_ids == []


def test_a_page_is_shown_as_text_where_that_is_cheaper(db_path):
    s = memory(db_path, keep_recent_turns=0).session("a")
    s.add_turns([("user", "Cutover OPS-4821."), ("assistant", "Noted.")])
    s.compress(flush=True)
    (page,) = s.pages()
    assert page.text_tokens < page.positions  # 2 short turns on a 111-position page
    ctx = s.context()
    (item,) = ctx.items
    assert item.presented == "text" and item.png is None and item.tokens < page.positions
    assert ctx.to_messages() == [
        {
            "role": "user",
            "content": f"[memory page 1 (id {page.id}): turns 1-2]\nuser: Cutover OPS-4821.\nassistant: Noted.",
        }
    ]
    assert s.stats().context_tokens == ctx.tokens
    assert s.page_source(page.id) == "user: Cutover OPS-4821.\nassistant: Noted."
    s.drop_archive()
    assert s.page_source(page.id) is None
    (item,) = s.context().items  # without the archive only the image is left
    assert item.presented == "image" and item.png and item.tokens > page.positions


def test_to_messages_keeps_names_and_tool_calls(db_path):
    s = memory(db_path).session("a")
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    s.add_turns(
        [
            {"role": "user", "content": "hi", "name": "ana"},
            {"role": "assistant", "content": "checking", "metadata": {"tool_calls": [call]}},
            {"role": "tool", "content": "42", "metadata": {"tool_call_id": "call_1"}},
        ]
    )
    msgs = s.context().to_messages()
    assert msgs[0] == {"role": "user", "content": "hi", "name": "ana"}
    assert msgs[1]["tool_calls"] == [call] and msgs[2]["tool_call_id"] == "call_1"


def test_search_reads_the_index_and_queues_what_was_never_decoded(db_path):
    mem = memory(db_path, keep_recent_turns=0, decode="lazy")
    s = mem.session("a")
    s.add_turn("user", "Book the hotel in Chengdu near Kuanzhai Alley, ticket TRV-2291. " * 8)
    s.add_turn("assistant", "The database migration window is Saturday 02:00 UTC. " * 8)
    s.compress(flush=True)
    backend = mem.backend
    assert isinstance(backend, TestDoubleBackend)
    calls = backend.calls
    hits = s.search("Chengdu hotel")
    assert hits == [] and hits.unsearched == len(s.pages())  # nothing decoded yet: queued, not read
    assert mem.wait(timeout=30)
    assert backend.calls > calls
    hits = s.search("Chengdu hotel")
    assert hits.unsearched == 0 and hits[0].score > 0.9 and "Chengdu" in hits[0].snippet
    assert s.search("TRV-2291")[0].page_id == hits[0].page_id  # the side channel is indexed
    assert s.search("xylophone quartet") == []
    with pytest.raises(InputError):
        s.search("  ")
    with pytest.raises(InputError):
        s.search("hotel", limit=0)


def test_decoded_text_is_keyed_by_the_backends_fingerprint(db_path):
    class Retrained(TestDoubleBackend):
        def fingerprint(self):
            return "test-double[retrained]"

    s = memory(db_path, keep_recent_turns=0).session("a")
    s.add_turns(chat_turns(10))
    s.compress(flush=True)
    pid = s.pages()[0].id
    assert s.recall_page(pid).cached
    other = memory(db_path, backend=Retrained(), keep_recent_turns=0).session("a")
    assert not other.recall_page(pid).cached  # new weights read the page again
    assert other.recall_page(pid).cached


def test_read_again_and_cached_only(db_path):
    mem = memory(db_path, keep_recent_turns=0, decode="lazy")
    s = mem.session("a")
    s.add_turns(chat_turns(10))
    s.compress(flush=True)
    pid = s.pages()[0].id
    assert s.cached_recall(pid) is None  # never runs OCR
    calls = mem.backend.calls
    first = s.recall_page(pid)
    assert s.cached_recall(pid) == first.__class__(**{**first.__dict__, "cached": True})
    again = s.recall_page(pid, refresh=True)
    assert mem.backend.calls == calls + 2 and not again.cached and again.text == first.text


def test_wait_returns_only_after_failures_are_logged(db_path, caplog):
    gate = threading.Event()

    class Slow(TestDoubleBackend):
        def decode(self, page):
            gate.wait(5)
            raise RuntimeError("engine crashed")

    mem = memory(db_path, backend=Slow(), decode="background", keep_recent_turns=0)
    s = mem.session("a")
    s.add_turns(chat_turns(10))
    with caplog.at_level(logging.WARNING, logger="optimem"):
        s.compress(flush=True)
        assert mem.pending_decodes() == 1
        assert mem.wait(timeout=0.05) is False
        gate.set()
        assert mem.wait(timeout=10) is True
        assert "engine crashed" in caplog.text  # already logged when wait() returns
    assert mem.pending_decodes() == 0


def test_async_twins(db_path):
    mem = memory(db_path, keep_recent_turns=0)
    s = mem.session("a")

    async def run():
        await s.aadd_turn("user", "Cutover is Saturday 02:00 UTC, ticket OPS-4821. " * 20)
        await s.aadd_turns(chat_turns(8))
        result = await s.acompress(flush=True)
        pages = await s.apages()
        assert result.created == [p.id for p in pages]
        assert (await s.arecall(pages[0].id)).startswith("user: Cutover")
        assert (await s.arecall_page(pages[0].id)).page_id == pages[0].id
        assert (await s.asearch("cutover"))[0].page_id == pages[0].id
        assert (await s.astats()).turns == 9
        assert (await s.acontext(4000)).items
        assert (await s.apage_png(pages[0].id)).startswith(b"\x89PNG")
        assert (await s.apage(pages[0].id)).id == pages[0].id
        assert (await s.apage_source(pages[0].id)).startswith("user: Cutover")
        assert [t.role for t in await s.aturns()][:2] == ["user", "user"]
        assert await s.alookup_external_ids(["nope"]) == {}
        assert await mem.asessions() == ["a"] and await mem.ahas_session("a") and await s.aexists()
        assert await mem.await_decodes(timeout=30) and await mem.apending_decodes() == 0
        assert await s.adrop_archive() == 9
        assert (await s.adelete()).turns == 9
        await mem.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("cls", [OpticalMemory, Session])
def test_every_public_method_has_an_async_twin(cls):
    # an event loop must never have to wrap a blocking call itself (issue 19)
    no_io = {"session", "public_page", "aclose"}  # build objects, no database or OCR
    named = {"wait": "await_decodes"}
    for name, member in vars(cls).items():
        twin_itself = (name.startswith("a") and name[1:] in vars(cls)) or name in named.values()
        if name.startswith("_") or twin_itself or name in no_io or not callable(member):
            continue
        twin = getattr(cls, named.get(name, "a" + name), None)
        assert twin is not None and inspect.iscoroutinefunction(twin), (
            f"{cls.__name__}.{name} has no async twin"
        )


def test_pricing_needs_no_loaded_engine(db_path):
    class Unloadable(TestDoubleBackend):
        @classmethod
        def positions(cls, mode):
            return {Mode.SMALL: 145}.get(mode, 257)

    mem = memory(db_path, backend=Unloadable(), keep_recent_turns=0)
    s = mem.session("a")
    s.add_turns(chat_turns(10))
    s.compress(flush=True)
    assert s.stats().positions == 145 * len(s.pages())
    # a memory opened by backend name prices pages without building the backend
    viewer = OpticalMemory(db_path, backend="deepseek-ocr2", policy=NoAging())
    assert viewer._backend is None and viewer.session("a").stats().positions == 145 * len(s.pages())


def test_default_backend_falls_back_when_tesseract_is_missing(db_path, monkeypatch, caplog):
    from optimem import backends
    from optimem.errors import BackendUnavailable

    real = backends.get_backend

    def no_tesseract(name, **kw):
        if name == "cpu":
            raise BackendUnavailable("backend 'cpu' needs tesserocr: pip install 'optimem[tesseract]'")
        return real(name, **kw)

    monkeypatch.setattr("optimem.memory.get_backend", no_tesseract)
    with caplog.at_level(logging.WARNING, logger="optimem"):
        mem = OpticalMemory(":memory:")
        assert mem.backend.name == "rapidocr"
    assert "reading pages with 'rapidocr'" in caplog.text
    assert get_backend("test-double").name == "test-double"


@pytest.mark.parametrize("name", ["ana\x1f", "line\nbreak", "nul\x00", " ", "x" * 201])
def test_speaker_names_the_renderer_cannot_draw_are_refused(db_path, name):
    # control characters in a speaker label crashed the typesetter (found by the REST fuzzer)
    s = memory(db_path, keep_recent_turns=0).session("a")
    with pytest.raises(InputError, match="name must be"):
        s.add_turn("user", "hello", name=name)
    assert not s.exists()


def test_unusual_but_drawable_names_page_fine(db_path):
    s = memory(db_path, keep_recent_turns=0).session("a")
    s.add_turn("user", "hello there", name="Zoë 🙂 \u200d李")
    s.compress(flush=True)
    assert s.recall(s.pages()[0].id).startswith("Zoë")
