"""Per-session numbers: pages and turns are numbered 1, 2, … in their session beside their global
ids, and what a person reads (captions, CLI, REST, viewer) uses the numbers."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from optimem import OpticalMemory, Page, Turn
from optimem.aging.pricing import page_caption
from optimem.cli.main import main
from optimem.server.main import create_app
from optimem.server.settings import Settings
from tests.server.conftest import words_turns


@pytest.fixture
def two_sessions(tmp_path):
    """'first' paged before 'second', whose global ids therefore start far from 1; the turns of
    the two sessions interleave in the turns table."""
    db = tmp_path / "m.db"
    mem = OpticalMemory(db, backend="test-double", decode="now", keep_recent_turns=0)
    first, second = mem.session("first"), mem.session("second")
    for batch in range(3):
        first.add_turns(words_turns(8, tag=f" first-{batch}"))
        second.add_turns(words_turns(5, tag=f" second-{batch}"))
    first.compress(flush=True)
    second.compress(flush=True)
    yield db, mem
    mem.close()


def test_pages_and_turns_are_numbered_in_their_session(two_sessions):
    _, mem = two_sessions
    for sid in ("first", "second"):
        s = mem.session(sid)
        turns, pages = s.turns(), s.pages()
        assert [t.number for t in turns] == list(range(1, len(turns) + 1))
        assert [p.number for p in pages] == list(range(1, len(pages) + 1))
        number_of = {t.id: t.number for t in turns}
        for p in pages:
            assert p.turn_numbers == (number_of[p.turn_ids[0]], number_of[p.turn_ids[-1]])
            assert s.page(p.id).number == p.number
    second = mem.session("second")
    page = second.pages()[0]
    assert page.number == 1 and page.id > 1 and second.turns()[0].id > 1  # global ids are not numbers
    first_turn, last_turn = page.turn_numbers
    assert page_caption(page) == f"[memory page 1 (id {page.id}): turns {first_turn}-{last_turn}]"
    assert first_turn == 1


def test_numbers_round_trip_through_json(two_sessions):
    _, mem = two_sessions
    s = mem.session("second")
    page, turn = s.pages()[-1], s.turns()[-1]
    data = page.to_dict()
    assert data["number"] == page.number and data["turn_numbers"] == list(page.turn_numbers)
    assert Page.from_dict(data) == page
    assert Turn.from_dict(turn.to_dict()) == turn and turn.to_dict()["number"] == 15


def test_context_captions_use_numbers(two_sessions):
    _, mem = two_sessions
    ctx = mem.session("second").context(budget_tokens=100_000)
    captions = [
        m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in ctx.to_messages()
    ]
    numbers = [int(re.match(r"\[memory page (\d+) \(id \d+\)", c).group(1)) for c in captions]
    assert sorted(numbers) == list(range(1, len(mem.session("second").pages()) + 1))


def test_rest_returns_ids_and_numbers(two_sessions):
    db, mem = two_sessions
    app = create_app(Settings(db=str(db), backend="test-double"), memory=mem)
    with TestClient(app) as c:
        pages = c.get("/v1/sessions/second/pages").json()["pages"]
        assert [p["number"] for p in pages] == list(range(1, len(pages) + 1))
        assert pages[0]["id"] != pages[0]["number"] and pages[0]["turn_numbers"][0] == 1
        one = c.get(f"/v1/sessions/second/pages/{pages[-1]['id']}").json()
        assert one["number"] == len(pages) and one["turn_numbers"][1] == 15
        turns = c.get("/v1/sessions/second/turns").json()["turns"]
        assert [t["number"] for t in turns] == list(range(1, 16))
        assert turns[0]["id"] != 1
        # the viewer shows the numbers, links by id
        timeline = c.get("/ui/s/second", params={"format": "json"}).json()
        assert (timeline["pages"][0]["number"], timeline["pages"][0]["first_turn"]) == (1, 1)
        html = c.get("/ui/s/second").text
        assert '<b data-testid="page-number">page 1</b>' in html
        assert f'href="/ui/s/second/pages/{pages[0]["id"]}"' in html
        page_html = c.get(f"/ui/s/second/pages/{pages[0]['id']}").text
        assert '<span data-testid="page-number">Page 1</span>' in page_html
        first, last = pages[0]["turn_numbers"]
        assert f"turns {first}–{last}" in page_html


def test_cli_prints_page_numbers_beside_ids(two_sessions):
    db, mem = two_sessions
    pages = mem.session("second").pages()
    runner = CliRunner()
    out = runner.invoke(main, ["stats", "--db", str(db), "--session", "second", "-b", "test-double"])
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.output.splitlines()[1 : 1 + len(pages)]]
    assert [(int(r[0]), int(r[1])) for r in rows] == [(p.number, p.id) for p in pages]
    assert rows[0][3] == f"1-{pages[0].turn_numbers[1]}"
