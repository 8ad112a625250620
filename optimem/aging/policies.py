"""Aging policies: which mode each page of a session should be kept at now.

A policy looks at every page's state (mode, age, cost, salience) and plans moves down the
ladder in `optimem.modes`; `BudgetPolicy` keeps a session's context within a token budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import InputError
from ..modes import Mode, mode_positions


@dataclass(frozen=True)
class PageState:
    """What a policy may look at to decide a page's mode."""

    page_id: int
    mode: Mode
    positions: int
    turns_since: int
    """Turns added to the session after the page's last turn."""
    created_at: datetime
    overhead: int = 0
    """Tokens the page costs beside its image at any mode (its caption)."""
    as_text: int | None = None
    """What the page costs shown as its source text instead, when the archive holds it."""
    salience: float = 0.0
    """Share of the page's characters in names, numbers and identifiers (`optimem.aging.salience`);
    0 where the policy did not ask for it."""
    turns_since_recall: int | None = None
    """Turns added after the page was last rehearsed (sharpened on recall), None if never."""

    @property
    def idle_turns(self) -> int:
        """Turns since the page was last used: written (its last turn) or rehearsed."""
        if self.turns_since_recall is None:
            return self.turns_since
        return min(self.turns_since, self.turns_since_recall)

    def cost_at(self, mode: Mode, cost: Callable[[Mode], int]) -> int:
        """What the page costs in context at `mode`: the cheaper of image + caption and text."""
        image = cost(mode) + self.overhead
        return image if self.as_text is None else min(image, self.as_text)


@dataclass(frozen=True)
class AgingPlan:
    """Target modes by page id (only pages that should move), the context cost after the plan
    (unpaged text + each page by `PageState.cost_at`) and whether that breaks the budget."""

    targets: dict[int, Mode]
    tokens_after: int
    over_budget: bool = False


class AgingPolicy:
    """Decides which mode each page should be kept at. Implement `plan`."""

    budget: int | None = None
    """The token budget the policy keeps the session within, if it has one."""

    @property
    def needs_salience(self) -> bool:
        """Whether `plan` reads `PageState.salience` (the pager computes it only then)."""
        return False

    def plan(
        self,
        pages: Sequence[PageState],
        text_tokens: int,
        now: datetime,
        cost: Callable[[Mode], int] = mode_positions,
    ) -> AgingPlan:
        """Return target modes for pages that should age, oldest pages first.

        `pages` come oldest first; `text_tokens` is what the session's unpaged turns cost;
        `cost` is what a page at a mode costs the model (the backend's `positions`).
        Policies only move pages down the ladder: forgetting is one way.
        """
        raise NotImplementedError


def _lower(a: Mode, b: Mode) -> Mode:
    return a if a.rank >= b.rank else b


@dataclass(frozen=True)
class StepsPolicy(AgingPolicy):
    """Shared logic of the age policies: after each threshold, a page is kept at most at mode."""

    steps: tuple[tuple[float, Mode], ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise InputError("an age policy needs at least one (threshold, mode) step")
        for threshold, mode in self.steps:
            if threshold < 0:
                raise InputError(f"age thresholds must be ≥ 0, got {threshold}")
            Mode.parse(mode)

    def _age(self, page: PageState, now: datetime) -> float:
        raise NotImplementedError

    def plan(
        self,
        pages: Sequence[PageState],
        text_tokens: int,
        now: datetime,
        cost: Callable[[Mode], int] = mode_positions,
    ) -> AgingPlan:
        targets: dict[int, Mode] = {}
        total = text_tokens
        for page in pages:
            mode = page.mode
            for threshold, step_mode in self.steps:
                if self._age(page, now) >= threshold:
                    mode = _lower(mode, Mode.parse(step_mode))
            if mode != page.mode:
                targets[page.page_id] = mode
            total += page.cost_at(mode, cost)
        return AgingPlan(targets, total)


@dataclass(frozen=True)
class TurnAgePolicy(StepsPolicy):
    """Age by how many turns came after a page: steps of (turns, mode)."""

    steps: tuple[tuple[float, Mode], ...] = (
        (20, Mode.LARGE),
        (60, Mode.BASE),
        (150, Mode.SMALL),
        (400, Mode.TINY),
    )

    def _age(self, page: PageState, now: datetime) -> float:
        return page.idle_turns  # a rehearsed page ages again from its recall


@dataclass(frozen=True)
class WallClockPolicy(StepsPolicy):
    """Age by time since a page was made: steps of (seconds, mode)."""

    steps: tuple[tuple[float, Mode], ...] = (
        (timedelta(hours=1).total_seconds(), Mode.LARGE),
        (timedelta(days=1).total_seconds(), Mode.BASE),
        (timedelta(days=7).total_seconds(), Mode.SMALL),
        (timedelta(days=30).total_seconds(), Mode.TINY),
    )

    def _age(self, page: PageState, now: datetime) -> float:
        created = page.created_at if page.created_at.tzinfo else page.created_at.replace(tzinfo=UTC)
        return (now - created).total_seconds()


@dataclass(frozen=True)
class BudgetPolicy(AgingPolicy):
    """Keep the session's context (unpaged text + pages, as `PageState.cost_at` prices them)
    within `max_tokens`.

    While over budget, it steps down one rung the least recently used of the sharpest pages
    (used: written, or rehearsed on recall; without rehearsal that is the oldest page).
    Forgetting is spread out rather than piled on one page (one rung down blurs a page a
    little, two rungs a lot: README, forgetting curve), and (without salience) a page used
    longer ago is never kept sharper than one used since. When every page is at the floor and the budget still does not
    fit, nothing is dropped: the plan says `over_budget`.

    With `salience`, small talk is forgotten before names, numbers and identifiers: among
    the sharpest pages, the victim is the least salient of those within `window` pages of
    the least recently used one in use order (ties, and differences under `margin` of the
    older page's salience, go to the older page). Recency still dominates, by construction: only pages at the sharpest rung
    are ever aged, so a page passed over is at most one rung sharper than newer pages, and it
    is passed over only in favour of its `window - 1` successors in use order; once they are
    a rung down it is the next victim, whatever its salience.
    """

    max_tokens: int = 4000
    floor: Mode = Mode.TINY
    salience: bool = False
    """Age low-salience pages first, within the `window`."""
    window: int = 4
    """How many pages, in use order from the least recently used sharpest one, may be
    weighed against each other by salience (1 = plain age order)."""
    margin: float = 0.2
    """A newer page is aged first only if its salience is at least this share lower than
    the older page's (0.2: at most 80% of it)."""

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise InputError(f"max_tokens must be positive, got {self.max_tokens}")
        if self.window < 1:
            raise InputError(f"the salience window must be at least 1 page, got {self.window}")
        if not 0 <= self.margin < 1:
            raise InputError(f"the salience margin is a share in [0, 1), got {self.margin}")

    @property
    def budget(self) -> int:  # type: ignore[override]
        return self.max_tokens

    @property
    def needs_salience(self) -> bool:
        return self.salience and self.window > 1

    def plan(
        self,
        pages: Sequence[PageState],
        text_tokens: int,
        now: datetime,
        cost: Callable[[Mode], int] = mode_positions,
    ) -> AgingPlan:
        modes = {p.page_id: p.mode for p in pages}
        total = text_tokens + sum(p.cost_at(p.mode, cost) for p in pages)
        floor = Mode.parse(self.floor)
        # least recently used first; a stable sort keeps page order among equals
        by_use = sorted(pages, key=lambda p: -p.idle_turns)
        position = {p.page_id: i for i, p in enumerate(by_use)}

        def cheaper(page: PageState) -> Mode | None:
            # the next rung at which this page costs less (a model may see two rungs at the
            # same price, and a page shown as text costs the same at every rung)
            mode = modes[page.page_id]
            now_cost = page.cost_at(mode, cost)
            lower = mode.older()
            while lower is not None and lower.rank <= floor.rank:
                if page.cost_at(lower, cost) < now_cost:
                    return lower
                lower = lower.older()
            return None

        while total > self.max_tokens:
            movable = [(p, lower) for p in by_use if (lower := cheaper(p)) is not None]
            if not movable:
                break
            sharpest = min(modes[p.page_id].rank for p, _ in movable)
            candidates = [(p, m) for p, m in movable if modes[p.page_id].rank == sharpest]
            victim, lower = candidates[0]  # least recently used
            if self.needs_salience:
                reach = position[victim.page_id] + self.window
                near = [c for c in candidates if position[c[0].page_id] < reach]
                least = min(near, key=lambda c: c[0].salience)  # the first (older) among equals
                if least[0].salience <= (1 - self.margin) * victim.salience and least[0] is not victim:
                    victim, lower = least
            total += victim.cost_at(lower, cost) - victim.cost_at(modes[victim.page_id], cost)
            modes[victim.page_id] = lower
        targets = {p.page_id: modes[p.page_id] for p in pages if modes[p.page_id] != p.mode}
        return AgingPlan(targets, total, over_budget=total > self.max_tokens)


def parse_policy(spec: str) -> AgingPolicy:
    """Build a policy from a short text form: 'budget:4000', 'budget:4000:salient' (window
    'budget:4000:salient:6'), 'turns', 'clock', 'none'."""
    name, _, arg = spec.partition(":")
    name = name.strip().lower()
    if name == "budget":
        return _parse_budget(arg)
    if name == "turns":
        return TurnAgePolicy()
    if name in ("clock", "time", "wallclock"):
        return WallClockPolicy()
    if name in ("none", "keep"):
        return NoAging()
    raise InputError(f"unknown policy {spec!r}; use budget:N, budget:N:salient, turns, clock or none")


def _parse_budget(arg: str) -> BudgetPolicy:
    tokens, _, rest = arg.partition(":")
    try:
        max_tokens = int(tokens or 4000)
    except ValueError:
        raise InputError(f"budget policy needs an integer token count, got {tokens!r}") from None
    if not rest:
        return BudgetPolicy(max_tokens=max_tokens)
    option, _, window = rest.partition(":")
    if option.strip().lower() != "salient":
        raise InputError(f"unknown budget option {option!r}; use budget:N:salient or budget:N:salient:WINDOW")
    try:
        return BudgetPolicy(max_tokens=max_tokens, salience=True, window=int(window or 4))
    except ValueError:
        raise InputError(f"the salience window must be an integer number of pages, got {window!r}") from None


class NoAging(AgingPolicy):
    """Pages stay at their creation mode (for benchmarks of one fixed mode)."""

    def plan(
        self,
        pages: Sequence[PageState],
        text_tokens: int,
        now: datetime,
        cost: Callable[[Mode], int] = mode_positions,
    ) -> AgingPlan:
        return AgingPlan({}, text_tokens + sum(p.cost_at(p.mode, cost) for p in pages))
