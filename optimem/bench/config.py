"""What a benchmark run does: its options (`BenchConfig`) and the schema id it writes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..aging.pricing import CONSUMERS
from ..backends import DEFAULT_BACKEND, Backend
from ..errors import InputError
from ..memory import DEFAULT_CREATION_MODE
from ..modes import LADDER, Mode

SCHEMA_ID = "optimem.bench/2"
"""Bumped to 2 with the strict runs (`targets`, `window_curve`, `config.target_savings`)."""
TEST_DOUBLE_WARNING = (
    "TEST DOUBLE: the 'test-double' backend reads the page layout, not pixels. Its fidelity, "
    "survival and speed figures are NOT measurements; use them only to check plumbing."
)


@dataclass(frozen=True)
class BenchConfig:
    """What to run. Defaults are those of `optimem bench`."""

    backend: str | Backend = DEFAULT_BACKEND
    budget_tokens: int = 4000
    """Token budget of the default policy (BudgetPolicy) and of the sliding window."""
    modes: tuple[Mode, ...] = LADDER
    """Fixed modes to replay (pages typeset at that mode, never aged)."""
    pages_per_mode: int = 3
    """Pages decoded per fixed-mode run, evenly spread; 0 decodes every page."""
    limit_turns: int | None = None
    keep_recent_turns: int = 6
    creation_mode: Mode = DEFAULT_CREATION_MODE
    """Mode the budget run typesets pages at (they age down from there)."""
    extra_encoding: str | None = "cl100k_base"
    consumers: tuple[str, ...] = tuple(CONSUMERS)
    allow_test_double: bool = False
    progress: bool = True
    target_savings: tuple[float, ...] = ()
    """Strict runs: for each target T, a budget replay at (text tokens ÷ T) per chat."""
    reading_aids: bool = True
    """Pages keep line checks and rare words and recall proofreads against them (see
    `OpticalMemory(reading_aids=)`); off measures the OCR alone."""
    workdir: Path | None = None
    """Keep the replay databases here (default: a temporary folder, removed after)."""
    jobs: int | None = None
    """Worker processes that read pages while the chats are replayed (None: one per core; 1:
    this process reads every page). Backends that must stay in one process (a GPU model)
    always read here (`optimem.bench.read_ahead`)."""

    def __post_init__(self) -> None:
        if self.budget_tokens <= 0:
            raise InputError(f"budget must be a positive token count, got {self.budget_tokens}")
        if self.jobs is not None and self.jobs < 1:
            raise InputError(f"jobs must be ≥ 1 (1 reads every page in this process), got {self.jobs}")
        if self.pages_per_mode < 0:
            raise InputError("pages per mode must be ≥ 0 (0 decodes every page)")
        if any(t < 1 for t in self.target_savings):
            raise InputError("target savings must be ≥ 1 (e.g. 10 for a tenth of the text tokens)")
        unknown = [c for c in self.consumers if c not in CONSUMERS]
        if unknown:
            raise InputError(f"unknown consumer {unknown[0]!r}; choose from {', '.join(CONSUMERS)}")


def is_test_double(backend: Backend) -> bool:
    """True for a backend that reads the layout instead of pixels (never a measurement)."""
    return not backend.capabilities.reads_pixels
