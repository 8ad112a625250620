"""Tool output and code come back as typed through real OCR: tabs, line breaks, indentation."""

from __future__ import annotations

import pytest

from optimem import OpticalMemory
from optimem.aging.policies import NoAging
from optimem.backends import get_backend
from optimem.backends.base import PageInput
from optimem.layout import turn_texts
from optimem.modes import Mode
from optimem.pages.typeset import RenderOptions, TurnText, paginate
from optimem.pages.verbatim import extract

TOOL = "name\tport\tnote\nsmtp\t25/tcp\tmail relay\nntp\t123/udp\ttime\n\nsince\t2024-05-01\tv1.2.3"
CODE = (
    "Here:\n```python\ndef pick(rows):\n    for r in rows:\n        if r[0] != '#':\n            yield r\n```"
)
TURNS = [TurnText(1, "tool", TOOL), TurnText(2, "assistant", CODE)]


def _recalled(backend: str) -> dict[int, str]:
    (page,) = paginate(TURNS, RenderOptions(canvas=640, font_px=8, code_font_px=10))
    decoded = get_backend(backend).decode(PageInput(page.image, Mode.SMALL, page.lines, 8.0))
    rows = [(b, r) for b, r in zip(page.lines, decoded.lines, strict=True) if b.start < b.end]
    return turn_texts(rows)


@pytest.mark.parametrize("backend", [pytest.param("rapidocr", marks=pytest.mark.slow), "cpu"])
def test_tab_separated_output_and_indented_code_come_back_as_typed(backend):
    got = _recalled(backend)
    tool = got[1].split("\n")
    assert len(tool) == len(TOOL.split("\n"))  # line breaks, the blank line included
    for want, read in zip(TOOL.split("\n"), tool, strict=True):
        assert read.count("\t") == want.count("\t")
        assert read.split("\t")[0] == want.split("\t")[0]
    for item in extract(TOOL):  # digit-first identifiers come back exactly, before any repair
        if item.value[0].isdigit():
            assert item.value in got[1]
    code = got[2].split("\n")
    assert code[0].endswith("Here:")
    for want, read in zip(CODE.split("\n")[1:], code[1:], strict=True):
        assert len(read) - len(read.lstrip(" ")) == len(want) - len(want.lstrip(" "))
        assert read.split() == want.split()


@pytest.mark.slow
def test_recall_through_the_memory_gives_tool_output_back_with_its_tabs(tmp_path):
    mem = OpticalMemory(tmp_path / "m.db", backend="cpu", decode="now", keep_recent_turns=0, policy=NoAging())
    s = mem.session("t")
    s.add_turns([("user", "which ports?"), ("tool", TOOL)])
    s.compress(flush=True)
    (page,) = s.pages()
    recall = s.recall_page(page.id)
    label, _, tool = recall.turns[max(recall.turns)].partition("\n")
    assert label.startswith("tool")  # the label's own row, then the output exactly as typed
    assert tool == TOOL
    mem.close()
