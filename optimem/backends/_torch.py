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


# ---------------------------------------------------------------------------------------------
# Mixture-of-experts matrix-vector kernels for decoding a few tokens at a time (CUDA, Triton).
#
# At batch 1 a decode step multiplies one token by 6 of 64 experts. Gathering those experts'
# weights first copies them (three passes over 27 MB a layer); a grouped GEMM sorts tokens
# and pays a dozen small launches. These two kernels read each selected expert's rows once,
# straight from the model's (experts, out, in) weight tensors, with the SiLU gate fused into
# the first and the routing weight into the second.

try:  # Triton ships with CUDA builds of torch; CPU-only installs never reach these kernels.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the install
    triton = None

if triton is not None:

    @triton.jit
    def _moe_gate_up_kernel(
        x_ptr, w_ptr, idx_ptr, out_ptr, K, inter,
        TOPK: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        j = tl.program_id(0)
        pid_n = tl.program_id(1)
        expert = tl.load(idx_ptr + j).to(tl.int64)
        token = j // TOPK
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < inter
        base = w_ptr + expert * (2 * inter * K)
        acc_g = tl.zeros([BLOCK_N], dtype=tl.float32)
        acc_u = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < K
            x = tl.load(x_ptr + token * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)
            m = mask_n[:, None] & mask_k[None, :]
            rows = offs_n[:, None] * K + offs_k[None, :]
            wg = tl.load(base + rows, mask=m, other=0.0).to(tl.float32)
            wu = tl.load(base + inter * K + rows, mask=m, other=0.0).to(tl.float32)
            acc_g += tl.sum(wg * x[None, :], axis=1)
            acc_u += tl.sum(wu * x[None, :], axis=1)
        act = acc_g / (1.0 + tl.exp(-acc_g)) * acc_u
        tl.store(out_ptr + j * inter + offs_n, act.to(out_ptr.dtype.element_ty), mask=mask_n)

    @triton.jit
    def _moe_down_kernel(
        a_ptr, w_ptr, idx_ptr, gate_ptr, out_ptr, hidden, inter,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        j = tl.program_id(0)
        pid_n = tl.program_id(1)
        expert = tl.load(idx_ptr + j).to(tl.int64)
        gate = tl.load(gate_ptr + j).to(tl.float32)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_n = offs_n < hidden
        base = w_ptr + expert * (hidden * inter)
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for k0 in range(0, inter, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < inter
            a = tl.load(a_ptr + j * inter + offs_k, mask=mask_k, other=0.0).to(tl.float32)
            m = mask_n[:, None] & mask_k[None, :]
            w = tl.load(base + offs_n[:, None] * inter + offs_k[None, :], mask=m, other=0.0)
            acc += tl.sum(w.to(tl.float32) * a[None, :], axis=1)
        tl.store(out_ptr + j * hidden + offs_n, acc * gate, mask=mask_n)


def moe_gemv_available(device: str) -> bool:
    """True where the Triton expert kernels can run (a CUDA device and Triton installed)."""
    return triton is not None and device.startswith("cuda")


def moe_gemv(x, gate_up, down, top_idx, top_w, *, block_n: int = 32, block_k: int = 128):
    """Routed-expert output for a few tokens: sum over k of w_k · down_e(silu(gate_e x) · up_e x).

    x (T, H); gate_up (E, 2I, H) and down (E, H, I) as the model stores them; top_idx and
    top_w (T, k). Returns (T, H) in x's dtype. Reads each selected expert's rows once.
    """
    import torch

    tokens, hidden = x.shape
    topk = top_idx.shape[1]
    inter = down.shape[2]
    rows = tokens * topk
    idx = top_idx.reshape(-1).contiguous()
    act = torch.empty(rows, inter, device=x.device, dtype=x.dtype)
    _moe_gate_up_kernel[(rows, triton.cdiv(inter, block_n))](
        x.contiguous(), gate_up, idx, act, hidden, inter,
        TOPK=topk, BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip
    out = torch.empty(rows, hidden, device=x.device, dtype=torch.float32)
    _moe_down_kernel[(rows, triton.cdiv(hidden, block_n))](
        act, down, idx, top_w.reshape(-1).contiguous(), out, hidden, inter,
        BLOCK_N=block_n, BLOCK_K=block_k,
    )  # fmt: skip
    return out.view(tokens, topk, hidden).sum(1).to(x.dtype)


__all__ = [
    "ALLOW_DOWNLOAD_ENV",
    "DEVICE_ENV",
    "GPU_EXTRA",
    "allow_download",
    "flash_attn_available",
    "moe_gemv",
    "moe_gemv_available",
    "pick_attention",
    "pick_device",
    "pick_dtype",
    "require_torch",
    "resolve_weights",
]
