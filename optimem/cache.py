"""The folder where optimem keeps what it builds once per machine and reuses in every process.

The spelling index (`optimem.aids.speller`, ~20 MB) and the token encodings unpacked from the
bpe-openai wheel (`optimem.tokens`) live here, each in its own subfolder: ``$OPTIMEM_CACHE_DIR``,
else ``$XDG_CACHE_HOME/optimem``, else ``~/.cache/optimem``. Each user of the folder writes its
files atomically (a temporary name, then a rename), so concurrent processes can share it, and
copes when it cannot be written.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$OPTIMEM_CACHE_DIR``, else ``$XDG_CACHE_HOME/optimem``, else ``~/.cache/optimem``."""
    explicit = os.environ.get("OPTIMEM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "optimem"
