"""Torch plumbing shared by the DeepSeek backends: imports, device, dtype, attention, weights.

Nothing here loads a model. It answers four questions the same way for every torch backend:
is the `gpu` extra installed (else `BackendUnavailable` with the pip line), which device and
dtype (bf16 on CUDA, float32 on the CPU), which attention kernel (SDPA by default,
flash-attention 2 where `flash_attn` imports and the model allows it), and where the weights
are (a local directory, or a hub id already in the local cache: never a download unless the
caller opts in).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable

GPU_EXTRA = "pip install 'optimem[gpu]'"
ALLOW_DOWNLOAD_ENV = "OPTIMEM_ALLOW_DOWNLOAD"
DEVICE_ENV = "OPTIMEM_DEVICE"


def require_torch(backend: str) -> tuple[Any, Any]:
    """(torch, transformers), or BackendUnavailable naming the extra to install."""
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend {backend!r} needs {exc.name or 'torch and transformers'}: {GPU_EXTRA}"
        ) from exc
    return torch, transformers


def pick_device(device: str | None = None) -> str:
    """`device`, else $OPTIMEM_DEVICE, else "cuda" when a GPU is visible, else "cpu"."""
    import torch

    chosen = device or os.environ.get(DEVICE_ENV) or ("cuda" if torch.cuda.is_available() else "cpu")
    if chosen.startswith("cuda") and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {chosen!r} was asked for but torch sees no CUDA GPU")
    return chosen


def pick_dtype(device: str, dtype: Any = None) -> Any:
    """bf16 on CUDA (what DeepSeek-OCR was trained and served in), float32 on the CPU."""
    import torch

    if dtype is not None:
        return getattr(torch, dtype) if isinstance(dtype, str) else dtype
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def flash_attn_available() -> bool:
    """True where the optional `flash_attn` package is importable (it needs CUDA to run)."""
    return importlib.util.find_spec("flash_attn") is not None


def pick_attention(device: str, requested: str | None = None) -> str:
    """ "flash_attention_2" on CUDA when flash_attn is installed, else "sdpa" (or `requested`)."""
    if requested:
        return requested
    if device.startswith("cuda") and flash_attn_available():
        return "flash_attention_2"
    return "sdpa"


def allow_download(explicit: bool | None) -> bool:
    """Downloads happen only when the caller says so, here or with $OPTIMEM_ALLOW_DOWNLOAD=1."""
    if explicit is not None:
        return explicit
    return os.environ.get(ALLOW_DOWNLOAD_ENV, "").strip().lower() in ("1", "true", "yes")


def _looks_like_path(source: str) -> bool:
    """A hub id is "org/name"; anything rooted, relative or deeper is meant as a directory."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def resolve_weights(
    model: str | os.PathLike[str] | None,
    *,
    env_var: str,
    default_id: str,
    label: str,
    download: bool,
) -> tuple[str, bool]:
    """Where to load `label`'s weights from: (source, local_files_only).

    Order: the `model` argument, then `$env_var`, then `default_id`. A directory is used as
    is. A hub id is used only if it is already in the local Hugging Face cache, unless
    `download` is true. Anything else raises BackendUnavailable saying how to provide it.
    """
    source = os.fspath(model) if model is not None else os.environ.get(env_var) or default_id
    how = (
        f"Download it where there is network (`hf download {default_id} --local-dir DIR`), "
        f"then set {env_var}=DIR or pass model=DIR; or allow a download with "
        f"allow_download=True / {ALLOW_DOWNLOAD_ENV}=1."
    )
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackendUnavailable(f"{label}: {path} has no config.json, so it holds no model. {how}")
        return str(path), True
    if _looks_like_path(source) or path.exists():
        raise BackendUnavailable(f"{label}: model directory {path} does not exist. {how}")
    if download:
        return source, False
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers always brings huggingface_hub
        cached = None
    else:
        cached = try_to_load_from_cache(source, "config.json")
    if not isinstance(cached, str):
        raise BackendUnavailable(
            f"{label}: no weights for {source!r} here (not a local directory, not in the "
            f"Hugging Face cache; optimem loads local files only). {how}"
        )
    return source, True


__all__ = [
    "ALLOW_DOWNLOAD_ENV",
    "DEVICE_ENV",
    "GPU_EXTRA",
    "allow_download",
    "flash_attn_available",
    "pick_attention",
    "pick_device",
    "pick_dtype",
    "require_torch",
    "resolve_weights",
]
