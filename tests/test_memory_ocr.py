"""End to end through real OCR engines (the default "cpu" backend: tesseract + rapidocr)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from optimem import Mode, OpticalMemory
from optimem.aging.policies import NoAging
from optimem.modes import LADDER
from optimem.reading.fidelity import fidelity

PROSE = (
    "The cutover for the billing database is planned for Saturday 18 April at 02:00 UTC. "
    "Priya owns the rollback plan and Dario reviews the replication lag dashboard before we "
    "start. If the lag stays under five seconds for an hour, we switch the application "
    "traffic and keep the old primary read only for one week."
)
IDS = "Ticket OPS-4821 tracks host db-replica-03.eu-west.internal; mail mara.l@kestrel.example or see https://wiki.kestrel.example/runbooks/pg16."


def ocr_memory(path, mode, **kw):
    kw.setdefault("policy", NoAging())
    return OpticalMemory(path, backend="cpu", decode="now", keep_recent_turns=0, creation_mode=mode, **kw)


def page_text(mem, page_id):
    lines = mem.store.page_blobs(page_id).layout
    return "\n".join(line.text for line in lines)


@pytest.mark.parametrize(
    "mode",
    [m if m in (Mode.SMALL, Mode.TINY) else pytest.param(m, marks=pytest.mark.slow) for m in LADDER],
    ids=[m.value for m in LADDER],
)
def test_round_trip_at_every_mode(tmp_path, mode):
    mem = ocr_memory(tmp_path / "m.db", mode)
    s = mem.session("a")
    s.add_turns([("user", PROSE), ("assistant", IDS)])
    s.compress(flush=True)
    (page,) = s.pages()
    assert page.mode is mode and page.canvas == mode.canvas
    recall = s.recall_page(page.id)
    assert recall.backend == "cpu" and recall.cached
    # raw OCR, before the verbatim side channel: the calibrated density reads back
    assert fidelity(recall.raw_text, page_text(mem, page.id)) >= 0.95
    # identifiers are exact after the side channel
    for value in ("OPS-4821", "db-replica-03.eu-west.internal", "mara.l@kestrel.example"):
        assert value in recall.text
    assert set(recall.turns) == set(page.turn_ids)
    mem.close()


@pytest.mark.slow
def test_aging_blurs_and_is_measured(tmp_path):
    mem = ocr_memory(tmp_path / "m.db", Mode.BASE, policy="budget:100")
    s = mem.session("a")
    s.add_turns([("user", PROSE * 3)])
    result = s.compress(flush=True)
    (page,) = s.pages()
    assert result.aged and page.mode is Mode.TINY  # 273 positions do not fit 100 tokens
    aged = s.recall_page(page.id)
    assert aged.mode is Mode.TINY and aged.cached  # decoded again at the new mode
    reference = page_text(mem, page.id)
    f = fidelity(aged.raw_text, reference)
    assert 0.0 <= f < 0.97  # 10 px type shrunk to half size is partly forgotten
    mem.close()


_CHILD = textwrap.dedent(
    """
    import json, sys
    from optimem import OpticalMemory
    from optimem.aging.policies import NoAging
    mem = OpticalMemory(sys.argv[1], backend="cpu", decode="now", keep_recent_turns=0,
                        creation_mode="small", policy=NoAging())
    s = mem.session("p")
    s.add_turns([("user", sys.argv[2])])
    s.compress(flush=True)
    print(json.dumps({p.id: s.recall(p.id) for p in s.pages()}))
    mem.close()
    """
)


@pytest.mark.slow
def test_pages_and_decoded_text_persist_across_processes(tmp_path):
    db = tmp_path / "m.db"
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(db), PROSE], capture_output=True, text=True, check=True
    )
    written = {int(k): v for k, v in json.loads(out.stdout).items()}
    mem = OpticalMemory(db, backend="cpu", decode="lazy")
    s = mem.session("p")
    for page_id, text in written.items():
        r = s.recall_page(page_id)
        assert r.cached  # no OCR in this process: the cache was written by the other one
        assert r.text == text
    mem.close()


def test_chinese_round_trip(tmp_path):
    mem = ocr_memory(tmp_path / "m.db", Mode.SMALL)
    s = mem.session("zh")
    s.add_turn("user", "我们四月二十三日在成都办公室开会，然后周五去大熊猫繁育研究基地。")
    s.compress(flush=True)
    (page,) = s.pages()
    r = s.recall_page(page.id)
    assert fidelity(r.raw_text, page_text(mem, page.id)) >= 0.9
    mem.close()
