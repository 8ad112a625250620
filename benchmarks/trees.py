"""Which checkout a side-by-side benchmark ran: shared by the benchmarks that take --baseline."""

from __future__ import annotations

import subprocess
from pathlib import Path


def commit(tree: Path) -> str:
    """The tree's commit, with "+changes" where it has uncommitted ones."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree,
                           capture_output=True, text=True)  # fmt: skip
    return (done.stdout.strip() or "?") + ("+changes" if dirty.stdout.strip() else "")
