"""Report outputs: the JSON schema is pinned and documented, plots are PNGs, banners show."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from PIL import Image

from optimem.bench import report

DOCS = Path(__file__).resolve().parents[2] / "docs" / "bench.md"


def test_json_validates_against_the_pinned_schema(bench_doc):
    assert report.validate(bench_doc) == []
    assert report.validate(json.loads(json.dumps(bench_doc))) == []


def test_schema_catches_drift(bench_doc):
    doc = copy.deepcopy(bench_doc)
    doc["chats"][0]["optimem"]["new_field"] = 1
    del doc["overall"]["text_tokens"]
    doc["chats"][0]["optimem"]["fidelity"]["mean"] = 1.5
    problems = report.validate(doc)
    assert any("unexpected key 'new_field'" in p for p in problems)
    assert any("missing 'text_tokens'" in p for p in problems)
    assert any("1.5 > maximum 1" in p for p in problems)


def test_docs_hold_the_schema_verbatim():
    text = DOCS.read_text(encoding="utf-8")
    assert report.schema_json() in text, "docs/bench.md must hold report.schema_json(): regenerate its block"


def test_write_all_writes_json_markdown_and_valid_pngs(bench_doc, tmp_path):
    written = report.write_all(bench_doc, tmp_path)
    assert set(written) == {
        "savings_fidelity",
        "fidelity_age",
        "tokens_seen",
        "strict_survival",
        "json",
        "markdown",
    }
    for key in report.PLOTS:
        path = written[key]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG" and im.width > 400 and im.height > 300
    assert json.loads(written["json"].read_text()) == json.loads(json.dumps(bench_doc))
    md = written["markdown"].read_text()
    for key in report.PLOTS:
        assert f"({report.PLOTS[key]})" in md
    assert "DeepSeek-OCR paper" in md


def test_test_double_is_shouted_everywhere(bench_doc):
    table = report.format_table(bench_doc)
    assert table.startswith(report.BANNER) and table.rstrip().endswith(report.BANNER)
    assert report.BANNER in report.to_markdown(bench_doc)


def test_every_fidelity_column_names_the_decoder(bench_doc):
    table = report.format_table(bench_doc)
    headers = [
        line
        for line in table.splitlines()
        if "fidelity" in line and "|" not in line and not line.startswith(("note", "!!"))
    ]
    assert len(headers) >= 3, table  # the budget run's, the fixed modes' and the age table's
    for line in headers:
        assert "test-double" in line, line
