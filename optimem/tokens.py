"""Exact, offline text-token counting with tiktoken encodings bundled in a wheel.

tiktoken fetches its encodings from the network on first use. The `bpe-openai` wheel ships
the same files gzipped, so we copy them into optimem's cache folder (`optimem.cache`) under
the name tiktoken looks for (sha1 of the official URL) and let tiktoken verify the sha256 as
usual.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
from functools import cache
from pathlib import Path

from .cache import cache_dir
from .errors import InputError, OptimemError

DEFAULT_ENCODING = "o200k_base"
ENCODINGS = ("o200k_base", "cl100k_base")
_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"


def _cache_dir() -> Path:
    """optimem's cache folder (`optimem.cache`), or a temporary one where that cannot be written."""
    for base in (cache_dir(), Path(tempfile.gettempdir()) / "optimem-cache"):
        path = base / "tiktoken"
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            return path
    raise OptimemError(
        f"no writable folder for token encodings: set OPTIMEM_CACHE_DIR ({cache_dir()} is not)"
    )


def _bpe_data() -> Path:
    """The wheel's data folder, found without importing `bpe_openai`: its `__init__` parses all
    three of its encodings (~0.8 s) before a file could be read through `importlib.resources`."""
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("bpe_openai")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _install_encoding(name: str, cache_dir: Path) -> None:
    target = cache_dir / hashlib.sha1(_URL.format(name=name).encode()).hexdigest()
    if target.exists():
        return
    try:
        packed = (_bpe_data() / f"{name}.tiktoken.gz").read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise InputError(f"no offline copy of the {name} encoding: pip install bpe-openai") from exc
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(gzip.decompress(packed))
    os.replace(tmp, target)  # atomic, so concurrent processes never read half a file


@cache
def get_encoding(name: str = DEFAULT_ENCODING):  # -> tiktoken.Encoding
    """Load a tiktoken encoding without touching the network."""
    if name not in ENCODINGS:
        raise InputError(f"unknown encoding {name!r}; choose one of {', '.join(ENCODINGS)}")
    import tiktoken
    import tiktoken.load

    cache_dir = _cache_dir()
    _install_encoding(name, cache_dir)
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir)
    try:
        return tiktoken.get_encoding(name)
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def count_tokens(text: str, encoding: str = DEFAULT_ENCODING) -> int:
    """Number of text tokens `text` costs a model using `encoding` (special tokens as text)."""
    return len(get_encoding(encoding).encode(text, disallowed_special=()))
