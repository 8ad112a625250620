"""The store protocol, run against every engine (`store` fixture): SQLite here; other engines
add themselves to STORES (PostgreSQL starts a real server)."""

import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from optimem import DuplicateExternalId, PageNotFound, SchemaError, SessionNotFound, StoreError
from optimem.layout import LineBox, Span, VerbatimItem
from optimem.modes import Mode
from optimem.store import (
    DecodedRecord,
    NewPage,
    PageAids,
    PageBlobs,
    SQLiteStore,
    Store,
    TurnTotals,
    migrate,
    open_store,
)

#: A database written by optimem 0.1.0 (made by the script beside it, at commit 35d0a14).
STORE_V0_1 = Path(__file__).parent / "data" / "store_v0_1.db"

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


def _page(turn_id, text="hello OPS-4821 world", mode=Mode.SMALL, aids=None):
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
        aids=aids,
    )


def test_open_store_picks_the_engine_by_scheme(tmp_path):
    s = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(s, SQLiteStore) and isinstance(s, Store)
    assert (tmp_path / "x.db").exists() and s.url == f"sqlite:///{tmp_path / 'x.db'}"
    s.close()
    assert open_store(s) is s
    with pytest.raises(StoreError, match="unsupported database URL scheme 'mysql'"):
        open_store("mysql://host/db")


def test_migrations_run_once_at_open_and_are_recorded_by_alembic(db_path):
    store = SQLiteStore(db_path)
    assert store.schema_version() == migrate.head() != migrate.BASELINE
    store.close()
    store = SQLiteStore(db_path)  # reopening applies nothing twice
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrate.head(),)]
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # optimem 0.1 sees a version it does not know and refuses, instead of writing the old way
    assert db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] > migrate.LEGACY_VERSION
    db.close()
    store.close()


def test_newer_schema_is_refused(db_path):
    SQLiteStore(db_path).close()
    db = sqlite3.connect(db_path)
    db.execute("UPDATE alembic_version SET version_num = '9999'")
    db.commit()
    db.close()
    with pytest.raises(SchemaError, match="upgrade optimem"):
        SQLiteStore(db_path)


def test_a_database_of_optimem_0_1_upgrades_in_place_and_keeps_every_row(tmp_path):
    path = tmp_path / "old.db"
    shutil.copy(STORE_V0_1, path)
    before = sqlite3.connect(path)
    turns = before.execute(
        "SELECT id, session_id, seq, role, content, external_id FROM turns ORDER BY id"
    ).fetchall()
    pages = before.execute("SELECT id, session_id, seq, mode, png, layout FROM pages ORDER BY id").fetchall()
    spans = before.execute('SELECT page_id, turn_id, start, "end" FROM page_spans ORDER BY 1, 2').fetchall()
    strings = before.execute(
        "SELECT page_id, kind, value FROM verbatim WHERE kind NOT IN ('lines', 'lexicon') ORDER BY rowid"
    ).fetchall()
    aids = dict(
        before.execute("SELECT kind, value FROM verbatim WHERE kind IN ('lines', 'lexicon')").fetchall()
    )
    decoded = before.execute("SELECT page_id, mode, fingerprint, text FROM decoded").fetchall()
    before.close()
    assert turns and pages and strings and set(aids) == {"lines", "lexicon"} and decoded

    store = SQLiteStore(path)
    assert store.schema_version() == migrate.head()
    sessions = store.session_ids()
    assert sessions == sorted({t[1] for t in turns}, key=[t[1] for t in turns].index)
    got = [t for s in sessions for t in store.turns(s)]
    assert [(t.id, t.session_id, t.seq, t.role, t.content, t.external_id) for t in got] == turns
    for pid, session_id, seq, mode, png, _layout in pages:
        page = store.page(session_id, pid)
        assert (page.seq, page.mode.value) == (seq, mode)
        assert store.page_blobs(pid).png == png
        assert [(pid, s.turn_id, s.start, s.end) for s in page.spans] == [x for x in spans if x[0] == pid]
        assert [(pid, v.kind, v.value) for v in store.verbatim(pid)] == [x for x in strings if x[0] == pid]
        moved = store.reading_aids(pid)  # out of verbatim, into their own table
        assert moved is not None and moved.checks == __import__("base64").b64decode(aids["lines"])
        assert moved.lexicon == tuple(w for w in aids["lexicon"].split() if w != "\u2026")
        assert moved.lexicon_complete == ("\u2026" not in aids["lexicon"])
    for pid, mode, fingerprint, text in decoded:
        record = store.get_decoded(pid, Mode(mode), fingerprint)
        assert record is not None and record.text == text and record.verified is None
    assert store.search_candidates(sessions[0], ["OPS-4821"], limit=5) == [pages[0][0]]
    assert store.integrity_problems() == []
    # and it keeps working: a new turn, a new page with its aids
    (tid,) = store.add_turns(sessions[0], [_row("after the upgrade OPS-9")])
    with store.transaction():
        (pid,) = store.insert_pages(sessions[0], [_page(tid, aids=PageAids(b"abc", ("Banff",), True))], [tid])
    assert store.reading_aids(pid) == PageAids(b"abc", ("Banff",), True)
    store.close()
    store = SQLiteStore(path)  # a second open finds it current
    assert len(store.turns(sessions[0])) == len([t for t in turns if t[1] == sessions[0]]) + 1
    store.close()


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
    assert store.turn_totals("acme/t1").last_seq == 3
    info = store.session_info("acme/t1")
    assert (info.turns, info.pages) == (3, 0)


def test_turn_totals_and_turns_by_id_without_loading_the_session(store):
    assert store.turn_totals("s") == TurnTotals(0, 0, 0, 0)
    ids = store.add_turns("s", [_row("one two"), _row("three"), _row("four five six")])
    store.add_turns("other", [_row("seven eight")])
    with store.transaction():
        store.insert_pages("s", [_page(ids[0])], [ids[0]])
    # 6 text tokens in all, of which turn 1's 2 are paged; the newest turn is seq 3
    assert store.turn_totals("s") == TurnTotals(3, 3, 6, 4)
    picked = store.turns("s", ids=[ids[2], ids[0], ids[0]])
    assert [t.id for t in picked] == [ids[0], ids[2]]  # in session order, each once
    assert [t.id for t in store.turns("s", ids=ids, paged=False)] == ids[1:]
    assert store.turns("other", ids=ids) == []  # another session's turns are not found


def test_duplicate_external_id_in_a_session_is_refused_whole(store):
    store.add_turns("s", [_row("a", external_id="m-1")])
    with pytest.raises(DuplicateExternalId, match="skip_existing"):
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
    assert store.page("s", pid).mode is Mode.TINY and store.page_blobs(pid).png == b"png2"
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
    assert store.page_blobs(pid) == PageBlobs(b"small", store.page_blobs(pid).layout, b"rep", "fp")
    assert store.pages("s")[0].rehearsed_seq == store.page_by_id(pid).rehearsed_seq == 7


def test_unpage_and_drop_archive(store):
    (tid,) = store.add_turns("s", [_row("hello OPS-4821 world")])
    with store.transaction():
        (pid,) = store.insert_pages("s", [_page(tid)], [tid])
    assert store.drop_archive("s") == 1
    assert store.turns("s")[0].content is None
    assert store.page_blobs(pid).layout[0].text == ""  # the layout forgets the text too
    assert store.page_blobs(pid).layout[0].end == 20  # ...but keeps how many characters it held
    with store.transaction():
        assert store.unpage(pid) == [tid]
    assert store.pages("s") == [] and not store.turns("s")[0].paged


def test_close_closes_every_pooled_connection(db_path):
    store = SQLiteStore(db_path)
    t = threading.Thread(target=lambda: store.add_turns("s", [_row("from a thread")]))
    t.start()
    t.join()
    assert store.engine.pool.checkedin() >= 1
    store.close()
    assert store.engine.pool.checkedin() == 0


def test_put_decoded_replaces_older_versions_and_skips_deleted_pages(store):
    (tid,) = store.add_turns("s", [_row("hello OPS-4821 world")])
    with store.transaction():
        (pid,) = store.insert_pages("s", [_page(tid)], [tid])
    old = DecodedRecord(pid, Mode.SMALL, "cpu", "cpu[v1]", "old text", None, 0.5, 0.1, verified=1)
    other = DecodedRecord(pid, Mode.SMALL, "gpu", "gpu[v1]", "gpu text", None, 0.5, 0.1)
    store.put_decoded(old, "old text")
    store.put_decoded(other, "gpu text")
    assert store.get_decoded(pid, Mode.SMALL, "cpu[v1]") == old  # the verified count comes back
    new = DecodedRecord(pid, Mode.SMALL, "cpu", "cpu[v2]", "new text", ("new text",), 0.9, 0.2, verified=1)
    store.put_decoded(new, "new text")
    assert store.get_decoded(pid, Mode.SMALL, "cpu[v1]") is None  # the older version's text is gone
    assert store.get_decoded(pid, Mode.SMALL, "cpu[v2]") == new
    assert store.get_decoded(pid, Mode.SMALL, "gpu[v1]") == other  # another backend's stays
    store.put_decoded(new, "new text")  # the same decode again: one row, updated
    assert store.indexed_text([pid]) == {pid: "new text"}
    with store.transaction():
        store.unpage(pid)
    store.put_decoded(new, "late")  # the page is gone: nothing is written
    assert store.get_decoded(pid, Mode.SMALL, "cpu[v2]") is None and store.indexed_text([pid]) == {}
    assert store.integrity_problems() == []


def test_reading_aids_round_trip_apart_from_verbatim(store):
    (a, b) = store.add_turns("s", [_row("hello OPS-4821 world"), _row("second")])
    aids = PageAids(checks=b"\x01\x02\x03", lexicon=("Banff", "Zoë"), lexicon_complete=False)
    with store.transaction():
        (with_aids,) = store.insert_pages("s", [_page(a, aids=aids)], [a])
        (without,) = store.insert_pages("s", [_page(b)], [b])
    assert store.reading_aids(with_aids) == aids
    assert store.reading_aids(without) is None
    assert [v.kind for v in store.verbatim(with_aids)] == ["identifier"]
    store.delete_session("s")
    assert store.reading_aids(with_aids) is None


def test_request_counts_per_minute(store):
    assert store.count_request("k", 100) == (1, 0)
    assert store.count_request("k", 100) == (2, 0)
    assert store.count_request("k", 101) == (1, 2)
    assert store.count_request("other", 101) == (1, 0)
    assert store.count_request("k", 103) == (1, 0)  # minute 101 was forgotten


def test_a_new_revision_is_numbered_after_the_head_and_runs_at_open(tmp_path, monkeypatch):
    """What docs/development.md tells a developer to do, on a copy of the revisions."""
    location = tmp_path / "migrations"
    shutil.copytree(migrate.LOCATION, location, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(migrate, "LOCATION", location)
    migrate.script.cache_clear()
    try:
        before = migrate.head()
        path = Path(migrate.new_revision("pages get a color"))
        assert (
            path.parent == location / "versions"
            and path.name == f"{int(before) + 1:04d}_pages_get_a_color.py"
        )
        source = path.read_text()
        assert f"down_revision = {before!r}" in source
        path.write_text(
            source.replace(
                "def upgrade() -> None:\n    pass",
                'def upgrade() -> None:\n    op.add_column("pages", sa.Column("color", sa.Text))',
            )
        )
        migrate.script.cache_clear()
        store = SQLiteStore(tmp_path / "m.db")
        assert store.schema_version() == f"{int(before) + 1:04d}"
        store.close()
        db = sqlite3.connect(tmp_path / "m.db")
        assert "color" in [r[1] for r in db.execute("PRAGMA table_info(pages)")]
        db.close()
    finally:
        migrate.script.cache_clear()
