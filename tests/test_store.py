"""The store protocol, run against every engine (`store` fixture): SQLite here; other engines
add themselves to STORES (PostgreSQL starts a real server)."""

import sqlite3
import threading

import pytest

from optimem import PageNotFound, SchemaError, SessionNotFound, StoreError
from optimem.layout import LineBox, Span, VerbatimItem
from optimem.modes import Mode
from optimem.store import DecodedRecord, NewPage, SQLiteStore, Store, open_store
from optimem.store.migrations import MIGRATIONS, SCHEMA_VERSION

#: PostgreSQL starts a real server: its runs are left to the full suite (and tests/test_postgres.py).
STORES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)]


@pytest.fixture(params=STORES)
def store(request, tmp_path):
    if request.param == "sqlite":
        s = open_store(tmp_path / "store.db")
    else:  # pragma: no cover - engines register their own factory
        s = request.getfixturevalue(f"{request.param}_store")
    yield s
    s.close()


def _row(content, **kw):
    return {
        "role": "user",
        "content": content,
        "sha256": "x",
        "text_tokens": len(content.split()),
        "created_at": "2026-01-01T00:00:00+00:00",
        "metadata": {},
    } | kw


def _page(turn_id, text="hello OPS-4821 world", mode=Mode.SMALL):
    line = LineBox(0, 0, 100, 10, text, turn_id, 0, len(text))
    return NewPage(
        mode=mode,
        canvas=mode.canvas,
        font_px=8,
        has_cjk=False,
        png=b"\x89PNG fake",
        lines=[line],
        spans=[Span(turn_id, 0, len(text))],
        text_tokens=4,
        chars=len(text),
        verbatim=[VerbatimItem("identifier", "OPS-4821", turn_id, 6)],
        last_turn_seq=1,
        last_turn_at="2026-01-01T00:00:00+00:00",
    )


def test_open_store_picks_the_engine_by_scheme(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(s, SQLiteStore) and isinstance(s, Store)
    assert (tmp_path / "x.db").exists() and s.url == f"sqlite:///{tmp_path / 'x.db'}"
    s.close()
    assert open_store(s) is s
    with pytest.raises(StoreError, match="unsupported database URL scheme 'mysql'"):
        open_store("mysql://host/db")


def test_migrations_are_recorded_and_idempotent(db_path):
    store = SQLiteStore(db_path)
    assert store.schema_version() == SCHEMA_VERSION
    store.close()
    store = SQLiteStore(db_path)  # reopening applies nothing twice
    rows = store.db.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert [tuple(r) for r in rows] == [(i + 1, m.__name__) for i, m in enumerate(MIGRATIONS)]
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_newer_schema_is_refused(db_path):
    SQLiteStore(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute("INSERT INTO schema_migrations VALUES (99, 'm099_future', 'now')")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="upgrade optimem"):
        SQLiteStore(db_path)


def test_memory_database_lives_while_open():
    s = SQLiteStore(":memory:")
    s.add_turns("a", [_row("hi")])
    assert s.session_ids() == ["a"]
    s.close()


def test_missing_things_raise(store):
    with pytest.raises(SessionNotFound):
        store.require_session("nope")
    with pytest.raises(SessionNotFound):
        store.delete_session("nope")
    with pytest.raises(PageNotFound, match="no page 7"):
        store.page("nope", 7)
    with pytest.raises(PageNotFound):
        store.page_by_id(7)


def test_transaction_rolls_back_on_error(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.add_turns("s", [_row("one")])
        raise RuntimeError("boom")
    assert store.session_ids() == [] and not store.has_session("s")


def test_turns_external_ids_and_prefix_listing(store):
    ids = store.add_turns("acme/t1", [_row("a", external_id="m-1"), _row("b"), _row("c", external_id="m-3")])
    store.add_turns("acme_x", [_row("d")])
    store.add_turns("other/t", [_row("e", external_id="m-1")])  # external ids are per session
    assert store.lookup_external_ids("acme/t1", ["m-1", "m-3", "m-9"]) == {"m-1": ids[0], "m-3": ids[2]}
    assert [t.external_id for t in store.turns("acme/t1")] == ["m-1", None, "m-3"]
    assert store.session_ids(prefix="acme/") == ["acme/t1"]  # '_' and '%' are not wildcards
    assert store.session_ids(prefix="ACME/") == []
    assert store.turn_count("acme/t1") == 3
    info = store.session_info("acme/t1")
    assert (info.turns, info.pages) == (3, 0)


def test_duplicate_external_id_in_a_session_is_refused_whole(store):
    store.add_turns("s", [_row("a", external_id="m-1")])
    with pytest.raises(Exception):  # noqa: B017 - the engine's integrity error
        store.add_turns("s", [_row("b", external_id="m-2"), _row("c", external_id="m-1")])
    assert [t.content for t in store.turns("s")] == ["a"]


def test_pages_decoded_cache_index_and_delete(store):
    (tid,) = store.add_turns("s", [_row("hello OPS-4821 world")])
    with store.transaction():
        (pid,) = store.insert_pages("s", [_page(tid)], [tid])
    page = store.page("s", pid)
    assert page.turn_ids == (tid,) and store.page_by_id(pid) == page
    assert store.span_ends([tid]) == {tid: 20}
    assert store.verbatim(pid)[0].value == "OPS-4821"
    rec = DecodedRecord(pid, Mode.SMALL, "cpu", "cpu[v1]", "hello 0PS-4821 world", ("hello",), 0.9, 0.1)
    store.put_decoded(rec, index_text="hello 0PS-4821 world\nOPS-4821")
    assert store.get_decoded(pid, Mode.SMALL, "cpu[v1]") == rec
    assert store.get_decoded(pid, Mode.SMALL, "cpu[v2]") is None  # new weights: no stale text
    assert store.indexed_text([pid]) == {pid: "hello 0PS-4821 world\nOPS-4821"}
    assert store.search_candidates("s", ["ops-4821"], limit=5) == [pid]
    assert store.search_candidates("other", ["ops-4821"], limit=5) == []
    store.set_page_mode(pid, Mode.TINY, b"png2", None, None)
    assert store.page("s", pid).mode is Mode.TINY and store.page_blobs(pid)[0] == b"png2"
    counts = store.delete_session("s")
    assert counts == {"turns": 1, "pages": 1, "decoded": 1, "verbatim": 1}
    assert not store.has_session("s") and store.indexed_text([pid]) == {}
    assert store.integrity_problems() == []


def test_rehearse_page_sharpens_and_notes_when(store):
    (tid,) = store.add_turns("s", [_row("hello OPS-4821 world")])
    with store.transaction():
        (pid,) = store.insert_pages("s", [_page(tid)], [tid])
    assert store.page("s", pid).rehearsed_seq is None
    store.set_page_mode(pid, Mode.TINY, b"tiny", None, None)
    aged_at = store.page("s", pid).aged_at
    store.rehearse_page(pid, Mode.SMALL, b"small", b"rep", "fp", 7)
    page = store.page("s", pid)
    assert (page.mode, page.canvas, page.rehearsed_seq, page.aged_at) == (Mode.SMALL, 640, 7, aged_at)
    assert store.page_blobs(pid)[0] == b"small" and store.page_blobs(pid)[2:] == (b"rep", "fp")
    assert store.pages("s")[0].rehearsed_seq == store.page_by_id(pid).rehearsed_seq == 7


def test_unpage_and_drop_archive(store):
    (tid,) = store.add_turns("s", [_row("hello OPS-4821 world")])
    with store.transaction():
        (pid,) = store.insert_pages("s", [_page(tid)], [tid])
    assert store.drop_archive("s") == 1
    assert store.turns("s")[0].content is None
    assert store.page_blobs(pid)[1][0].text == ""  # the layout forgets the text too
    assert store.page_blobs(pid)[1][0].end == 20  # ...but keeps how many characters it held
    with store.transaction():
        assert store.unpage(pid) == [tid]
    assert store.pages("s") == [] and not store.turns("s")[0].paged


def test_close_closes_every_threads_connection(db_path):
    store = SQLiteStore(db_path)
    conns = []
    t = threading.Thread(target=lambda: conns.append(store.db))
    t.start()
    t.join()
    conns.append(store.db)
    store.close()
    for conn in conns:
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
