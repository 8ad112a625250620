"""Replay a chat turn by turn through a Session and read its pages back, public API only.

A replay adds each turn and calls `compress()` as an agent would, recording the tokens the
model sees after every turn; `read_pages` then recalls pages once each and scores them
against their source text, which it rebuilds from the session's own turns.
"""

from __future__ import annotations

import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rapidfuzz import fuzz
from tqdm import tqdm

from ..aging.policies import AgingPolicy
from ..backends import Backend
from ..memory import OpticalMemory, Session
from ..modes import Mode
from ..pages.typeset import TurnText
from ..records import Page, Recall, Turn
from . import metrics as m
from .config import BenchConfig
from .datasets import Chat, ChatTurn

if TYPE_CHECKING:
    from .read_ahead import ReadAhead
    from .shared_reads import SharedReads

T = TypeVar("T")
_WS = re.compile(r"\s+")


@dataclass
class PageRead:
    """One page read back and scored."""

    page: Page
    turns_since: int
    reference: str
    fidelity: float
    fidelity_repaired: float
    ids_total: int
    ids_exact_raw: int
    ids_exact: int
    ids_by_kind: dict[str, list[int]]
    decoder_seconds: float
    wall_seconds: float
    turn_text: dict[int, str]
    """Recalled text per turn id (the whole page's text when the decoder gave no lines)."""
    scope: str
    """'turn' when the decoder read line by line, else 'page'."""
    recall: Recall
    shared_from: str | None = None
    """The earlier replay whose read of the same image this page was given (`SharedReads`);
    None: read here."""


@dataclass(frozen=True)
class ReplaySpec:
    """What makes one replay of a chat differ from another: its label (the database file's
    name), the aging policy and the mode new pages are typeset at."""

    label: str
    policy: AgingPolicy
    creation_mode: Mode


@dataclass
class Replay:
    """One chat replayed through one session, and what was read back from it."""

    label: str
    session: Session
    memory: OpticalMemory
    turn_ids: dict[str, int]
    """Source turn id → memory turn id."""
    series: list[int] = field(default_factory=list)
    """Tokens the model sees (text + page positions as the backend counts them) after each turn."""
    compress_seconds: list[float] = field(default_factory=list)
    over_budget: bool = False
    reads: dict[int, PageRead] = field(default_factory=dict)

    def step(self, turn: ChatTurn) -> None:
        """Add one turn of the chat and compress, as an agent would, recording what it cost."""
        self.turn_ids[turn.id] = self.session.add_turn(
            turn.role, turn.content, name=turn.name, created_at=turn.created_at
        )
        t0 = time.perf_counter()
        result = self.session.compress()
        self.compress_seconds.append(time.perf_counter() - t0)
        self.series.append(result.tokens_after)
        self.over_budget = result.over_budget

    def unpaged(self) -> list[Turn]:
        """Turns still in context as text."""
        return [t for t in self.session.turns() if not t.paged]


def replay(chat: Chat, spec: ReplaySpec, *, cfg: BenchConfig, backend: Backend, folder: Path) -> Replay:
    """Add every turn of `chat` to a fresh session, compressing after each one."""
    rep = reopen(chat, spec, cfg=cfg, backend=backend, folder=folder)
    for turn in bar(chat.turns, cfg, f"{chat.name} · {spec.label} · replay", unit="turn"):
        rep.step(turn)
    return rep


def reopen(chat: Chat, spec: ReplaySpec, *, cfg: BenchConfig, backend: Backend, folder: Path) -> Replay:
    """The replay `spec` of `chat` in `folder`, as `replay` opens it: a fresh one, or one
    another process made (`optimem.bench.read_ahead`), whose record the caller fills in."""
    mem = OpticalMemory(
        folder / f"{spec.label}.db",
        backend=backend,
        policy=spec.policy,
        creation_mode=spec.creation_mode,
        keep_recent_turns=cfg.keep_recent_turns,
        decode="lazy",
        reading_aids=cfg.reading_aids,
    )
    return Replay(spec.label, mem.session(chat.name[:256] or "chat"), mem, {})


def read_pages(
    rep: Replay,
    pages: Sequence[Page],
    cfg: BenchConfig,
    chat: Chat,
    shared: SharedReads | None = None,
    ahead: ReadAhead | None = None,
) -> None:
    """Recall each of `pages` once and score it against its source text; with `shared`, a page
    an earlier replay of the chat already read as the same image takes that read; with `ahead`,
    a page a worker process has read takes that read and the worker's seconds."""
    s = rep.session
    turns = {t.id: t for t in s.turns()}
    pages_per_turn: dict[int, int] = defaultdict(int)
    for p in s.pages():
        for tid in p.turn_ids:
            pages_per_turn[tid] += 1
    total_turns = len(turns)
    for page in bar(pages, cfg, f"{chat.name} · {rep.label} · decode", unit="page"):
        key = shared.key(rep, page) if shared is not None else None
        shared_from = shared.give(rep, page, key) if shared is not None else None
        ahead_wall = ahead.seconds(rep, page.id) if ahead is not None and shared_from is None else None
        t0 = time.perf_counter()
        recall = s.recall_page(page.id)
        wall = time.perf_counter() - t0 if ahead_wall is None else ahead_wall
        if shared is not None:
            shared.keep(rep, page, key)
        by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for item in recall.verbatim:
            counts = by_kind[item.kind]
            counts[0] += 1
            counts[1] += item.value in recall.raw_text
            counts[2] += item.value in recall.text
        if recall.turns:
            turn_text, scope = dict(recall.turns), "turn"
        else:
            turn_text, scope = {tid: recall.text for tid in page.turn_ids}, "page"
        reference = page_reference(page, recall, turns, {t for t, n in pages_per_turn.items() if n > 1})
        rep.reads[page.id] = PageRead(
            page=page,
            turns_since=total_turns - page.last_turn_seq,
            reference=reference,
            fidelity=m.fidelity(recall.raw_text, reference),
            fidelity_repaired=m.fidelity(recall.text, reference),
            ids_total=len(recall.verbatim),
            ids_exact_raw=sum(c[1] for c in by_kind.values()),
            ids_exact=sum(c[2] for c in by_kind.values()),
            ids_by_kind=dict(by_kind),
            decoder_seconds=recall.seconds,
            wall_seconds=wall,
            turn_text=turn_text,
            scope=scope,
            recall=recall,
            shared_from=shared_from,
        )


def turn_source(turn: Turn) -> str:
    """What a page draws for a whole turn: its speaker label, then its content."""
    return TurnText(turn.id, turn.role, turn.content or "", turn.name).label + (turn.content or "")


def page_reference(page: Page, recall: Recall, turns: dict[int, Turn], split: set[int]) -> str:
    """The source text a page holds, rebuilt from its turns.

    A turn held whole is its label and content. A turn split over several pages contributes
    the stretch of its source that best matches what was read of it on this page (the same
    words, found by alignment), so a page is scored against its own share of the turn.
    """
    parts = []
    for tid in page.turn_ids:
        full = _WS.sub(" ", turn_source(turns[tid])).strip()
        if tid not in split:
            parts.append(full)
            continue
        read = _WS.sub(" ", recall.turns.get(tid) or recall.raw_text).strip()
        if not read or not full:
            continue
        if len(read) >= len(full):
            parts.append(full)
            continue
        al = fuzz.partial_ratio_alignment(read, full)
        parts.append(full[al.dest_start : al.dest_end] if al is not None else full)
    return "\n".join(parts)


def sample_pages(pages: Sequence[T], k: int) -> list[T]:
    """`k` pages spread evenly from first to last (all of them when k is 0 or ≥ len)."""
    n = len(pages)
    if k <= 0 or k >= n:
        return list(pages)
    if k == 1:
        return [pages[n // 2]]
    idx = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [pages[i] for i in idx]


def bar(items: Iterable[T], cfg: BenchConfig, desc: str, unit: str) -> Iterable[T]:
    """A progress bar on stderr, or the items themselves when progress is off."""
    return tqdm(items, desc=desc, unit=unit, file=sys.stderr, disable=not cfg.progress, leave=False)
