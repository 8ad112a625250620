"""Pages read in worker processes while the chats are replayed: the same figures, other cores."""

from __future__ import annotations

import pytest

from optimem.backends import get_backend
from optimem.backends.base import Capabilities
from optimem.backends.testing import TestDoubleBackend
from optimem.bench import report, runner
from optimem.errors import InputError
from optimem.modes import Mode

from .conftest import config, tiny_chat

#: What a page row says of the page and its read, apart from how long the read took.
SAME = ("turn_ids", "text_tokens", "chars", "font_px", "canvas", "fidelity", "fidelity_with_verbatim",
        "identifiers", "identifiers_exact_ocr", "recall_scope")  # fmt: skip


def _rows(doc):
    chat = doc["chats"][0]
    runs = [chat["optimem"], *chat["modes"].values()]
    return [[row[k] for k in SAME] for run in runs for row in run["page_rows"]]


def test_workers_read_every_page_and_change_no_figure(reads):
    chats = [tiny_chat(45), tiny_chat(24)]  # 45 turns fill a 1,280 px page: Large shares Gundam's
    cfg = dict(modes=(Mode.GUNDAM, Mode.LARGE, Mode.TINY), target_savings=(8, 10))
    alone = runner.run(chats, config(**cfg))
    read_alone = len(reads)
    assert read_alone > 0
    ahead = runner.run(chats, config(**cfg, jobs=2))
    assert len(reads) == read_alone  # not one page read in this process
    assert report.validate(ahead) == []
    assert alone["config"]["read_ahead_processes"] == 0 and ahead["config"]["read_ahead_processes"] == 2
    assert _rows(ahead) == _rows(alone)
    for a, b in zip(alone["chats"], ahead["chats"], strict=True):
        assert [x.get("optimem") for x in a["answers"]] == [x.get("optimem") for x in b["answers"]]
        assert [t["survival"] for t in a["targets"]] == [t["survival"] for t in b["targets"]]
        # an image two replays make is still read once, and given to the later one
        assert a["modes"]["large"]["timing"]["pages_shared"] == b["modes"]["large"]["timing"]["pages_shared"]
        assert b["optimem"]["timing"]["recall_s_total"] > 0  # the workers' seconds
    assert sum(c["modes"]["large"]["timing"]["pages_shared"] for c in ahead["chats"]) > 0


class _OneProcess(TestDoubleBackend):
    capabilities = Capabilities(reads_pixels=False, reads_mode=False, in_processes=False)


def test_backends_that_must_stay_in_one_process_read_here():
    assert runner.read_ahead_jobs(config(jobs=4), get_backend("test-double")) == 4
    assert runner.read_ahead_jobs(config(jobs=1), get_backend("test-double")) == 0
    assert runner.read_ahead_jobs(config(jobs=4), _OneProcess()) == 0  # a GPU model, say
    instance = TestDoubleBackend()
    assert runner.read_ahead_jobs(config(jobs=4, backend=instance), instance) == 0  # no name to load by
    assert runner.read_ahead_jobs(config(jobs=None), get_backend("test-double")) in (0, *range(2, 1024))
    with pytest.raises(InputError, match="jobs must be"):
        config(jobs=0)
