"""Rehearsal and salient aging through the memory: plumbing with the test double, one end-to-end
run through a real OCR engine (the default `cpu` backend)."""

import pytest

from optimem import Mode, OpticalMemory
from optimem.aging.policies import BudgetPolicy, NoAging
from optimem.reading.fidelity import fidelity

from .conftest import chat_turns

#: Four pages of the 60 test turns: one Tiny page fits beside three Small ones (captions included).
BUDGET = 630


def memory(path, **kw):
    kw.setdefault("backend", "test-double")
    kw.setdefault("decode", "now")
    kw.setdefault("policy", BudgetPolicy(max_tokens=BUDGET))
    kw.setdefault("keep_recent_turns", 2)
    return OpticalMemory(path, **kw)


def modes(s):
    return [p.mode for p in s.pages()]


def test_recall_rehearses_one_rung_and_the_budget_ages_another_page(db_path):
    mem = memory(db_path, rehearse=True)
    s = mem.session("a")
    s.add_turns(chat_turns(60))
    s.compress()
    ids = [p.id for p in s.pages()]
    assert modes(s) == [Mode.TINY, Mode.SMALL, Mode.SMALL, Mode.SMALL]
    old = s.recall_page(ids[0])
    assert old.mode is Mode.TINY  # the text returned is the page as it was read
    # the oldest page is Small again and kept its id; the next least recently used paid for it
    assert [p.id for p in s.pages()] == ids
    assert modes(s) == [Mode.SMALL, Mode.TINY, Mode.SMALL, Mode.SMALL]
    assert s.stats().context_tokens <= BUDGET
    again = s.recall_page(ids[0])
    assert again.mode is Mode.SMALL and again.text.startswith("user: Turn 0:")
    # it counts as used when it was recalled: a tighter budget ages a newer page before it
    tighter = mem.pager.plan("a", BudgetPolicy(max_tokens=s.stats().context_tokens - 30))
    assert tighter.targets == {ids[2]: Mode.TINY}
    mem.close()


def test_rehearsal_is_off_by_default_and_can_be_asked_per_recall(db_path):
    mem = memory(db_path)
    s = mem.session("a")
    s.add_turns(chat_turns(60))
    s.compress()
    first = s.pages()[0].id
    s.recall(first)
    assert modes(s) == [Mode.TINY, Mode.SMALL, Mode.SMALL, Mode.SMALL]
    s.recall_page(first, rehearse=True)
    assert modes(s)[:2] == [Mode.SMALL, Mode.TINY]
    mem.close()


def test_a_dropped_archive_disables_rehearsal(db_path):
    mem = memory(db_path, rehearse=True, archive=False)
    s = mem.session("a")
    s.add_turns(chat_turns(60))
    s.compress()  # pages made, then the archive dropped
    assert all(t.content is None for t in s.turns() if t.paged)
    before = [(p.id, p.mode, p.canvas) for p in s.pages()]
    first = before[0][0]
    assert s.recall_page(first).mode is Mode.TINY  # still read back as it is
    assert s.rehearse(first) is None
    assert [(p.id, p.mode, p.canvas) for p in s.pages()] == before
    assert mem.store.page("a", first).rehearsed_seq is None
    mem.close()


def test_rehearsal_stops_at_the_creation_mode_and_where_the_budget_has_no_room(db_path):
    mem = memory(db_path, rehearse=True, policy=BudgetPolicy(max_tokens=4 * 85))
    s = mem.session("a")
    s.add_turns(chat_turns(60))
    s.compress()
    assert set(modes(s)) == {Mode.TINY}  # at the floor: a Small page does not fit beside them
    first = s.pages()[0].id
    png = s.page_png(first)
    assert s.rehearse(first) is None and s.page_png(first) == png
    assert mem.store.page("a", first).rehearsed_seq == 60  # not sharper, but used now
    mem.policy = BudgetPolicy(max_tokens=10_000)
    assert s.rehearse(s.pages()[0].id) is Mode.SMALL
    assert s.rehearse(s.pages()[0].id) is None  # Small is where it was made: nothing sharper
    mem.close()


def test_salient_policy_string_keeps_the_page_of_names_and_numbers_sharper(db_path):
    facts = [
        ("user", f"Caroline paid ${1200 + i} for ticket OPS-{4800 + i} on 2024-05-{i + 10:02d} in Banff "
         f"with Melanie, Priya and Dario from Kestrel; host db-{i:02d}.eu-west, build v1.{i}.3.")
        for i in range(14)
    ]  # fmt: skip
    turns = facts + chat_turns(46)
    mem = memory(db_path, policy=NoAging())
    s = mem.session("a")
    s.add_turns(turns)
    s.compress()
    full = s.stats().context_tokens  # every page Small
    scores = [mem.pager.salience(p) for p in mem.store.pages("a")]
    assert len(scores) == 3 and scores[0] > 2 * max(scores[1:])  # page 0 holds the facts
    mem.close()
    outcome = {}
    for spec in (f"budget:{full - 20}", f"budget:{full - 20}:salient"):
        mem = memory(db_path.with_name(spec.replace(":", "-") + ".db"), policy=spec)
        s = mem.session("a")
        s.add_turns(turns)
        s.compress()
        assert s.stats().context_tokens <= full - 20
        outcome[spec.endswith("salient")] = modes(s)
        mem.close()
    assert outcome[False] == [Mode.TINY, Mode.SMALL, Mode.SMALL]  # age order: the oldest page
    assert outcome[True] == [Mode.SMALL, Mode.TINY, Mode.SMALL]  # small talk goes first


PROSE = (
    "Caroline went to the pottery workshop in Banff on 14 May with Melanie. They made two bowls and "
    "a vase, and Melanie painted hers blue because it reminded her of the lake near their cabin."
)


@pytest.mark.slow
def test_rehearsal_through_real_ocr_restores_the_creation_image(tmp_path):
    mem = OpticalMemory(tmp_path / "m.db", backend="cpu", decode="now", keep_recent_turns=0, policy=NoAging(),
                        rehearse=True)  # fmt: skip
    s = mem.session("a")
    places = ("Banff", "Jasper", "Canmore", "Golden")  # ~250 text tokens: more than the page costs
    s.add_turns(
        [("user" if i % 2 == 0 else "assistant", PROSE.replace("Banff", p)) for i, p in enumerate(places)]
    )
    s.compress(flush=True)
    (page,) = s.pages()
    created = s.page_png(page.id)
    reference = s.page_source(page.id)
    sharp = s.recall_page(page.id, rehearse=False)
    mem.policy = BudgetPolicy(max_tokens=100)
    s.compress()
    assert s.page(page.id).mode is Mode.TINY
    mem.policy = BudgetPolicy(max_tokens=4000)
    tiny = s.recall_page(page.id)
    assert tiny.mode is Mode.TINY and tiny.backend == "cpu"
    # typeset again from the archive at its creation settings: the very image it was made as
    assert s.page(page.id).mode is Mode.SMALL and s.page_png(page.id) == created
    again = s.recall_page(page.id)
    assert again.mode is Mode.SMALL and again.cached  # decoded at Small when it was made
    assert again.raw_text == sharp.raw_text
    read = s.recall_page(page.id, refresh=True)  # OCR on the rehearsed image itself
    assert read.mode is Mode.SMALL and not read.cached and read.raw_text == sharp.raw_text
    assert fidelity(read.raw_text, reference) >= 0.95
    mem.close()


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False)])
def test_the_service_setting(value, expected):
    from optimem.server.settings import Settings

    assert Settings.from_env({"OPTIMEM_REHEARSE": value}).rehearse is expected
