from datetime import UTC, datetime, timedelta

import pytest

from optimem import InputError, Mode
from optimem.aging.policies import (
    BudgetPolicy,
    NoAging,
    PageState,
    TurnAgePolicy,
    WallClockPolicy,
    parse_policy,
)
from optimem.modes import LADDER, gundam_positions, view_positions

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def test_positions_match_deepseek_preprocessing():
    assert [m.positions for m in (Mode.TINY, Mode.SMALL, Mode.BASE, Mode.LARGE)] == [73, 111, 273, 421]
    assert [m.nominal_tokens for m in (Mode.TINY, Mode.SMALL, Mode.BASE, Mode.LARGE)] == [64, 100, 256, 400]
    assert view_positions(8, 8) == 8 * 9 + 1
    # Gundam: 1024 global view + tile rows·10·(cols·10+1)
    assert gundam_positions(2, 2) == 273 + 20 * 21
    assert gundam_positions(1, 3) == 273 + 10 * 31
    assert Mode.GUNDAM.positions == 693


def test_ladder_goes_down_and_stops():
    assert LADDER[0] is Mode.GUNDAM and LADDER[-1] is Mode.TINY
    assert Mode.LARGE.older() is Mode.BASE
    assert Mode.TINY.older() is None
    assert [m.canvas for m in LADDER] == [1280, 1280, 1024, 640, 512]


def test_mode_parse():
    assert Mode.parse("Tiny") is Mode.TINY
    with pytest.raises(InputError, match="unknown mode"):
        Mode.parse("huge")


def _pages(n, mode=Mode.LARGE):
    return [PageState(i, mode, mode.positions, 10 * (n - i), NOW - timedelta(days=n - i)) for i in range(n)]


def test_budget_policy_spreads_forgetting_oldest_first():
    pages = _pages(4)  # 4 × 421 = 1684
    plan = BudgetPolicy(max_tokens=1400).plan(pages, text_tokens=0, now=NOW)
    # one rung at a time, oldest of the sharpest pages first
    assert plan.targets == {0: Mode.BASE, 1: Mode.BASE}
    assert plan.tokens_after == 273 + 273 + 421 + 421
    plan = BudgetPolicy(max_tokens=1000).plan(pages, text_tokens=0, now=NOW)
    assert [plan.targets.get(i, Mode.LARGE) for i in range(4)] == [
        Mode.SMALL,
        Mode.BASE,
        Mode.BASE,
        Mode.BASE,
    ]
    assert plan.tokens_after <= 1000 and not plan.over_budget


def test_budget_policy_never_keeps_an_older_page_sharper():
    pages = [PageState(0, Mode.BASE, 273, 50, NOW), PageState(1, Mode.LARGE, 421, 10, NOW)]
    plan = BudgetPolicy(max_tokens=500).plan(pages, text_tokens=0, now=NOW)
    modes = [plan.targets.get(p.page_id, p.mode) for p in pages]
    assert modes[0].rank >= modes[1].rank


def test_budget_policy_never_drops_and_reports_over_budget():
    plan = BudgetPolicy(max_tokens=100).plan(_pages(3), text_tokens=500, now=NOW)
    assert set(plan.targets.values()) == {Mode.TINY}
    assert plan.over_budget and plan.tokens_after == 500 + 3 * 73


def test_budget_policy_validates():
    with pytest.raises(InputError):
        BudgetPolicy(max_tokens=0)


def test_turn_age_policy():
    plan = TurnAgePolicy(steps=((5, Mode.BASE), (25, Mode.TINY))).plan(_pages(3), 0, NOW)
    # turns_since = 30, 20, 10
    assert plan.targets == {0: Mode.TINY, 1: Mode.BASE, 2: Mode.BASE}


def test_wall_clock_policy():
    plan = WallClockPolicy(steps=((86400 * 1.5, Mode.SMALL),)).plan(_pages(3), 0, NOW)
    # ages 3, 2, 1 days
    assert plan.targets == {0: Mode.SMALL, 1: Mode.SMALL}


def test_policies_never_sharpen_a_page():
    pages = [PageState(1, Mode.TINY, 73, 0, NOW)]
    assert TurnAgePolicy().plan(pages, 0, NOW).targets == {}
    assert NoAging().plan(pages, 5, NOW).tokens_after == 78


def test_parse_policy():
    assert parse_policy("budget:1234").max_tokens == 1234
    assert isinstance(parse_policy("turns"), TurnAgePolicy)
    assert isinstance(parse_policy("none"), NoAging)
    with pytest.raises(InputError):
        parse_policy("budget:lots")
    with pytest.raises(InputError):
        parse_policy("forget-everything")


V2_COST = {Mode.GUNDAM: 833, Mode.LARGE: 257, Mode.BASE: 257, Mode.SMALL: 145, Mode.TINY: 145}.__getitem__


def test_budget_policy_counts_the_backends_cost_and_skips_rungs_that_save_nothing():
    # DeepSeek-OCR 2 sees Large and Base alike (257), and Small and Tiny alike (145)
    pages = _pages(3)
    plan = BudgetPolicy(max_tokens=700).plan(pages, text_tokens=0, now=NOW, cost=V2_COST)
    assert plan.targets == {0: Mode.SMALL}  # straight past Base: blurring it would save nothing
    assert plan.tokens_after == 145 + 257 + 257
    plan = BudgetPolicy(max_tokens=100).plan(pages, text_tokens=0, now=NOW, cost=V2_COST)
    assert set(plan.targets.values()) == {Mode.SMALL}  # never Tiny: it costs the same as Small
    assert plan.over_budget and plan.tokens_after == 3 * 145


# -- salience-aware aging and rehearsal order --------------------------------------------------


def _salient_pages(saliences, mode=Mode.SMALL):
    n = len(saliences)
    return [
        PageState(i, mode, mode.positions, 10 * (n - i), NOW, salience=s) for i, s in enumerate(saliences)
    ]


def _aged(plan):
    return sorted(plan.targets)


def test_salient_policy_ages_small_talk_first_within_the_window():
    pages = _salient_pages([0.30, 0.0, 0.0, 0.0, 0.0, 0.0])  # page 0: the oldest, dense in names
    budget = 6 * 111 - 2 * 38  # two pages must go Small → Tiny (38 tokens each)
    assert _aged(BudgetPolicy(max_tokens=budget).plan(pages, 0, NOW)) == [0, 1]
    salient = BudgetPolicy(max_tokens=budget, salience=True, window=3)
    assert _aged(salient.plan(pages, 0, NOW)) == [1, 2]


def test_salient_policy_is_bounded_by_its_window():
    pages = _salient_pages([0.30, 0.0, 0.0, 0.0, 0.0, 0.0])
    # a third page must go: page 0's two successors in the window are down already, so it is
    # next, however salient; page 3 (outside the window) keeps its rung
    plan = BudgetPolicy(max_tokens=6 * 111 - 3 * 38, salience=True, window=3).plan(pages, 0, NOW)
    assert _aged(plan) == [0, 1, 2]


def test_salient_policy_keeps_no_page_more_than_one_rung_sharper_than_a_newer_one():
    import random

    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(2, 12)
        pages = [
            PageState(i, Mode.LARGE, 421, n - i, NOW, salience=rng.choice([0.0, 0.02, 0.1, 0.4]))
            for i in range(n)
        ]
        policy = BudgetPolicy(
            max_tokens=rng.randint(73 * n, 421 * n), salience=True, window=rng.randint(2, 8)
        )
        plan = policy.plan(pages, 0, NOW)
        ranks = [plan.targets.get(p.page_id, p.mode).rank for p in pages]
        for older in range(n):
            for newer in range(older + 1, n):
                assert ranks[older] >= ranks[newer] - 1, (ranks, policy)


def test_salient_policy_needs_a_clear_difference():
    pages = _salient_pages([0.05, 0.045, 0.0])
    policy = BudgetPolicy(max_tokens=3 * 111 - 38, salience=True, window=2, margin=0.2)
    assert _aged(policy.plan(pages, 0, NOW)) == [0]  # 10% less salient: age order decides
    pages = _salient_pages([0.05, 0.039, 0.0])
    assert _aged(policy.plan(pages, 0, NOW)) == [1]  # over 20% less: small talk goes first
    with pytest.raises(InputError):
        BudgetPolicy(margin=1.0)


def test_plain_policy_ignores_salience_and_window_one_is_plain_order():
    pages = _salient_pages([0.9, 0.0, 0.0])
    budget = 3 * 111 - 38
    assert _aged(BudgetPolicy(max_tokens=budget).plan(pages, 0, NOW)) == [0]
    assert _aged(BudgetPolicy(max_tokens=budget, salience=True, window=1).plan(pages, 0, NOW)) == [0]
    assert not BudgetPolicy(max_tokens=budget, salience=True, window=1).needs_salience
    assert BudgetPolicy(max_tokens=budget, salience=True).needs_salience
    with pytest.raises(InputError):
        BudgetPolicy(max_tokens=budget, window=0)


def test_a_rehearsed_page_counts_as_used_when_it_was_recalled():
    pages = [
        PageState(0, Mode.SMALL, 111, 30, NOW, turns_since_recall=0),  # oldest, recalled just now
        PageState(1, Mode.SMALL, 111, 20, NOW),
        PageState(2, Mode.SMALL, 111, 10, NOW),
    ]
    assert [p.idle_turns for p in pages] == [0, 20, 10]
    assert _aged(BudgetPolicy(max_tokens=3 * 111 - 38).plan(pages, 0, NOW)) == [1]
    assert _aged(BudgetPolicy(max_tokens=3 * 111 - 2 * 38).plan(pages, 0, NOW)) == [1, 2]
    # turn-age steps count from the recall too
    assert TurnAgePolicy(steps=((15, Mode.TINY),)).plan(pages, 0, NOW).targets == {1: Mode.TINY}


def test_parse_policy_salient_forms():
    policy = parse_policy("budget:3000:salient")
    assert policy.max_tokens == 3000 and policy.salience and policy.window == 4
    assert parse_policy("budget:3000:salient:6").window == 6
    assert not parse_policy("budget:3000").salience
    with pytest.raises(InputError, match="unknown budget option"):
        parse_policy("budget:3000:loud")
    with pytest.raises(InputError, match="window"):
        parse_policy("budget:3000:salient:wide")


def test_mode_sharper_is_older_reversed():
    assert Mode.TINY.sharper() is Mode.SMALL and Mode.GUNDAM.sharper() is None
    assert all(m.older().sharper() is m for m in LADDER[:-1])
