"""Replays of a chat that make the same page image: a decoder that reads pixels reads it once."""

from __future__ import annotations

import pytest

from optimem.backends import get_backend
from optimem.backends.base import Capabilities
from optimem.backends.testing import TestDoubleBackend
from optimem.bench import report, runner
from optimem.bench.shared_reads import SharedReads
from optimem.bench.text import format_table
from optimem.modes import Mode

from .conftest import config, tiny_chat

#: What a page row says about the page and its read, apart from how long the read took.
SAME = ("turn_ids", "text_tokens", "chars", "font_px", "canvas", "fidelity", "fidelity_with_verbatim",
        "identifiers", "identifiers_exact_ocr", "recall_scope")  # fmt: skip

#: 45 turns of 90 words fill one 1,280 px page (a page waits for more turns until it is full).
CHAT = tiny_chat(45)


def _fixed_modes(backend_name: str, modes, tmp_path, pages_per_mode: int = 2):
    """The benchmark's fixed-mode runs of CHAT, in order, sharing reads as `run_chat` does."""
    cfg = config(
        backend=backend_name, allow_test_double=backend_name == "test-double", pages_per_mode=pages_per_mode
    )
    backend = get_backend(backend_name)
    shared = SharedReads(backend)
    tokens = sum(len(t.content.split()) for t in CHAT.turns)
    return {m.value: runner._fixed_mode(CHAT, m, cfg, backend, tmp_path, tokens, shared)[0] for m in modes}


def _same_reads(a, b) -> bool:
    return [[row[k] for k in SAME] for row in a["page_rows"]] == [
        [row[k] for k in SAME] for row in b["page_rows"]
    ]


def test_large_takes_gundams_reads_of_the_same_images(reads, tmp_path):
    modes = _fixed_modes("test-double", (Mode.GUNDAM, Mode.LARGE), tmp_path)
    gundam, large = modes["gundam"], modes["large"]
    assert gundam["timing"]["pages_shared"] == 0 and large["timing"]["recall_pages"] == 0
    assert large["timing"]["pages_shared"] == large["pages_decoded"] == gundam["pages_decoded"]
    assert {row["shared_from"] for row in large["page_rows"]} == {"gundam"}
    assert Mode.LARGE not in reads and reads.count(Mode.GUNDAM) == gundam["pages_decoded"] > 0
    assert _same_reads(large, gundam)
    assert large["positions"] < gundam["positions"]  # what differs is what the pages cost


def test_a_decoder_that_reads_the_mode_reads_every_run(reads, monkeypatch, tmp_path):
    monkeypatch.setattr(TestDoubleBackend, "capabilities", Capabilities(reads_pixels=False, reads_mode=True))
    modes = _fixed_modes("test-double", (Mode.GUNDAM, Mode.LARGE), tmp_path)
    assert all(r["timing"]["pages_shared"] == 0 for r in modes.values())
    assert reads.count(Mode.LARGE) == modes["large"]["pages_decoded"] > 0


def test_the_report_says_which_reads_were_shared(tmp_path):
    doc = runner.run([CHAT], config(modes=(Mode.GUNDAM, Mode.LARGE), budget_tokens=10**6, pages_per_mode=1))
    assert report.validate(doc) == []
    assert doc["chats"][0]["modes"]["large"]["timing"]["pages_shared"] == 1
    table = format_table(doc)
    assert "1 (1 shared)" in table and "pages read back were the same image" in table


@pytest.mark.slow
def test_strict_runs_share_pages_aged_alike(reads):
    """Two tight budgets age the same Small pages to the same Tiny images: read once."""
    doc = runner.run([CHAT], config(modes=(), target_savings=(10, 12)))
    assert report.validate(doc) == []
    chat = doc["chats"][0]
    first, second = chat["targets"]
    assert first["pages"] > 0 and second["pages_shared"] > 0
    read = chat["optimem"]["timing"]["recall_pages"] + first["pages"] - first["pages_shared"]
    assert len(reads) == read + second["pages"] - second["pages_shared"]


@pytest.mark.slow
def test_through_the_cpu_ocr_a_replay_takes_the_read_of_the_same_image(tmp_path):
    """Two replays at Small (a 640 px page reads in about a second): the second reads nothing."""
    backend = get_backend("cpu")  # the real engines are installed by scripts/install.sh: no skip
    cfg = config(backend="cpu", allow_test_double=False, pages_per_mode=1)
    shared = SharedReads(backend)
    chat = tiny_chat(14)
    tokens = sum(len(t.content.split()) for t in chat.turns)
    first, _ = runner._fixed_mode(chat, Mode.SMALL, cfg, backend, tmp_path / "a", tokens, shared)
    second, _ = runner._fixed_mode(chat, Mode.SMALL, cfg, backend, tmp_path / "b", tokens, shared)
    assert first["timing"]["recall_pages"] == 1 and first["fidelity"]["mean"] >= 0.97
    assert second["timing"]["pages_shared"] == 1 and second["timing"]["recall_pages"] == 0
    assert _same_reads(first, second) and second["identifiers"] == first["identifiers"]
