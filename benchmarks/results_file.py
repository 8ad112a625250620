"""Writing a benchmark's JSON result: shared by the benchmarks that take --out."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: Path | None, doc: dict, *, keep_earlier: bool = False) -> None:
    """`doc` as indented JSON at `path` (nothing when None), its folder made first. With
    `keep_earlier`, keys of a result already there that `doc` does not have stay: a benchmark
    that runs one part again keeps the others."""
    if path is None:
        return
    earlier = json.loads(path.read_text()) if keep_earlier and path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(earlier | doc, indent=1) + "\n")
