"""Write a benchmark result to a folder: bench.json, bench.md and the PNG plots.

The pieces live in `schema` (JSON schema, validator), `text` (terminal table, markdown) and
`plots` (PNG); they are re-exported here for callers that want one import.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .plots import PLOTS, write_plots
from .schema import SCHEMA, schema_json, validate
from .text import BANNER, format_table, to_markdown

__all__ = [
    "BANNER",
    "PLOTS",
    "SCHEMA",
    "format_table",
    "schema_json",
    "to_markdown",
    "validate",
    "write_all",
    "write_plots",
]


def write_all(doc: dict[str, Any], folder: Path, *, plots: bool = True) -> dict[str, Path]:
    """bench.json, bench.md and the plots into `folder`; returns what was written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if plots:
        written.update(write_plots(doc, folder))
    json_path = folder / "bench.json"
    json_path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    written["json"] = json_path
    md_path = folder / "bench.md"
    rel = {k: v.name for k, v in written.items() if k in PLOTS}
    md_path.write_text(to_markdown(doc, rel), encoding="utf-8")
    written["markdown"] = md_path
    return written
