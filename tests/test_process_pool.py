"""Background reading in worker processes (`decode_pool="processes"`): same text, no page lost.

Worker processes open the store by URL and the backend by name; the parent's engine reads none
of the pages the workers read. The fast test uses the test-double backend (plumbing);
the slow one reads real pages with the `cpu` backend and checks the text equals what this
process reads of the same pages.
"""

from __future__ import annotations

import pytest

from optimem import OpticalMemory
from optimem.backends.testing import TestDoubleBackend
from optimem.errors import InputError

from .conftest import chat_turns


def _memory(path, backend: str, **kw) -> OpticalMemory:
    return OpticalMemory(
        path,
        backend=backend,
        decode="background",
        keep_recent_turns=0,
        policy="none",
        decode_workers=2,
        decode_pool="processes",
        **kw,
    )


def test_worker_processes_read_every_page_and_the_parent_reads_none(db_path):
    mem = _memory(db_path, "test-double")
    before = mem.backend.calls  # the test double is shared by name within this process
    s = mem.session("t")
    s.add_turns(chat_turns(24))
    s.compress(flush=True)
    pages = s.pages()
    assert len(pages) >= 2
    assert mem.wait(120)
    assert mem.decoder.unread(["t"]) == []
    # the workers wrote the text: the parent's engine read no page
    assert mem.backend.calls == before
    mem.close()
    here = OpticalMemory(db_path, backend="test-double", decode="now", policy="none")
    t = here.session("t")
    for page in pages:
        cached = t.cached_recall(page.id)
        assert cached is not None and cached.text == t.recall_page(page.id, refresh=True).text
    here.close()


def test_processes_need_a_shared_database_and_a_backend_by_name(tmp_path):
    with pytest.raises(InputError, match="backend by name"):
        OpticalMemory(tmp_path / "m.db", backend=TestDoubleBackend(), decode_pool="processes")
    # refused when the memory opens, not after a compress has stored its pages
    with pytest.raises(InputError, match=":memory:"):
        OpticalMemory(":memory:", backend="test-double", decode_pool="processes", keep_recent_turns=0)
    with pytest.raises(InputError, match="threads' or 'processes"):
        OpticalMemory(tmp_path / "n.db", backend="test-double", decode_pool="fork")


@pytest.mark.slow
def test_real_pages_read_in_processes_match_a_read_in_this_process(db_path):
    from optimem.bench.datasets import load_default

    mem = _memory(db_path, "cpu", creation_mode="small")  # Small pages: ~1 s a read, not ~5 s
    s = mem.session("t")
    s.add_turns([(t.role, t.content) for t in load_default().turns[:12]])
    s.compress(flush=True)
    ids = [p.id for p in s.pages()][:2]
    assert len(ids) == 2
    assert mem.wait(600)
    mem.close()
    here = OpticalMemory(db_path, backend="cpu", decode="now", policy="none")
    t = here.session("t")
    for pid in ids:
        read_there = t.cached_recall(pid)
        assert read_there is not None
        assert read_there.text == t.recall_page(pid, refresh=True).text
        assert read_there.lines_exact > 0.9 * read_there.lines_checked
    here.close()
