"""No input makes a page unreadable: generated turns through the real `cpu` decoder.

A recall returns the page or raises a typed `OptimemError`; never anything else. The case
the REST fuzzer found (a 150-character speaker name on a two-letter turn) stays a fixed
regression example.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from optimem import OpticalMemory
from optimem.aids.linecheck import digest
from optimem.errors import DecodeError, InputError, OptimemError
from optimem.reading.correction import Corrector, with_label

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8",
        categories=("L", "M", "N", "P", "S", "Zs", "Cc"),
        include_characters="\n\t \u200b\u202e\ufeff",
    ),
    min_size=1,
    max_size=400,
)
TURN = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool"]), "content": TEXT},
    optional={"name": st.text(min_size=1, max_size=160)},
)


def test_a_long_label_on_a_short_reading_is_put_in_place():
    label = "n" * 150 + " (user):"
    assert with_label("ok", label) == label
    fix = Corrector().correct(["nnnnn ok"], digest(f"{label} ok"), label=label)
    assert fix.text.startswith(label)


@pytest.fixture(scope="module")
def memory(tmp_path_factory):
    mem = OpticalMemory(
        tmp_path_factory.mktemp("poison") / "m.db", backend="cpu", decode="lazy", keep_recent_turns=0
    )
    yield mem
    mem.close()


_count = iter(range(10**6))


@pytest.mark.slow
@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(TURN, min_size=1, max_size=3))
@example([{"role": "user", "content": "ok", "name": "n" * 150}])
def test_any_turns_are_read_back_or_fail_with_a_typed_error(memory, turns):
    session = memory.session(f"fuzz/{next(_count)}")
    try:
        session.add_turns(turns)
    except InputError:
        return  # refused whole, with a message: nothing stored
    session.compress(flush=True)
    for page in session.pages():
        try:
            recall = session.recall_page(page.id)
        except OptimemError as exc:
            assert not isinstance(exc, DecodeError) or exc.page_id == page.id
            continue
        assert len(recall.lines) == len(recall.verified)
        assert isinstance(recall.text, str)
