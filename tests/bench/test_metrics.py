"""Hand-computed checks of the benchmark arithmetic."""

from __future__ import annotations

import pytest

from optimem.bench import metrics as m


def test_normalise_answer_folds_case_space_quotes_and_edge_punctuation():
    assert m.normalise_answer("  “Kestrel   Logistics”.\n") == '"kestrel logistics"'.strip('"')
    assert m.normalise_answer("OPS–4821") == "ops-4821"  # en dash made plain


@pytest.mark.parametrize(
    ("answer", "text", "found"),
    [
        ("OPS-4821", "the umbrella ticket is OPS-4821 and", True),
        ("ops-4821", "The umbrella ticket is OPS-4821.", True),
        ("OPS-4821", "ticket OPS-4B21", False),  # 7 of 8 characters: 0.875 < 0.9
        ("Kestrel Logistics in Dublin", "works at Kestrel Logistcs in Dublin now", True),  # one letter lost
        ("EUR 48,500", "budget is EUR\n 48,500 in total", True),  # whitespace normalised
        ("2022", "painted it in 2021", False),
        ("", "anything", False),
    ],
)
def test_answer_found(answer, text, found):
    assert m.answer_found(answer, text) is found


def test_answer_score_by_hand():
    # partial ratio = Indel similarity 2·M/(len a + len b) of the best-aligned stretch:
    # "abcdefghi" (9 matches) against the 10-character answer gives 18/19
    assert m.answer_score("abcdefghij", "xx abcdefghij yy") == 1.0
    assert m.answer_score("abcdefghij", "abcdefghiX") == pytest.approx(18 / 19)


def test_savings_and_compression():
    assert m.savings(16_000, 4_000) == 4.0
    assert m.savings(10, 0) == float("inf")
    assert m.compression(842, 421) == 2.0
    assert m.compression(5, 0) == 0.0
    assert m.share(0, 0) is None
    assert m.share(1, 4) == 0.25


def test_sliding_window_keeps_the_newest_turns_that_fit():
    assert m.window_start([100, 200, 300], 500) == 1  # 300 + 200 = 500 fits
    assert m.window_start([100, 200, 300], 499) == 2
    assert m.window_start([100, 200, 300], 10) == 3  # the newest turn alone is too big
    assert m.window_start([100, 200, 300], 10_000) == 0
    assert m.window_series([100, 200, 300], 350) == [100, 300, 300]


def test_age_buckets():
    assert m.age_bucket(0) == "0-9"
    assert m.age_bucket(9) == "0-9"
    assert m.age_bucket(10) == "10-24"
    assert m.age_bucket(399) == "200-399"
    assert m.age_bucket(400) == "400+"
    with pytest.raises(ValueError):
        m.age_bucket(-1)


def test_paper_points_are_the_papers():
    tiny = [(p.precision, p.compression) for p in m.PAPER_FOX if p.mode == "tiny"]
    small = [(p.precision, p.compression) for p in m.PAPER_FOX if p.mode == "small"]
    assert tiny == [(0.965, 10.5), (0.838, 13.2), (0.793, 16.5), (0.591, 19.7)]
    assert small == [(0.985, 6.7), (0.968, 8.5), (0.915, 10.6), (0.871, 12.6)]
