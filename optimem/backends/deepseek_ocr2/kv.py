"""KV-cache sizing for the static decoder: bytes per row, length buckets, the memory budget.

Pure arithmetic (no torch), so the CPU tests check it and the docs quote it. The decoder
allocates one cache per (batch bucket, length bucket) when a call first needs it, and checks
each allocation against a budget: the model's weights, the caches already held and a workspace
estimate for the prefill must fit under `max_gpu_memory`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ...errors import BackendMemoryError

MIN_LENGTH = 512
"""Smallest cache-length bucket (positions); buckets double up to the model's context."""

GROW_HEADROOM = 512
"""New tokens a call's first cache leaves room for; a call that goes on moves its rows to the
next length bucket (a copy), so a page that stops early never pays for `max_new_tokens`."""


@dataclass(frozen=True)
class KVShape:
    """What one cached position costs: layers × kv heads × head size × (K and V) × dtype bytes."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int

    @property
    def bytes_per_position(self) -> int:
        return self.layers * self.kv_heads * self.head_dim * 2 * self.dtype_bytes

    def bytes(self, rows: int, length: int) -> int:
        """Bytes of the K and V caches for `rows` rows of `length` positions."""
        return rows * length * self.bytes_per_position


def kv_shape(text_config: Any, dtype_bytes: int) -> KVShape:
    """The KV shape of a DeepSeek-OCR 2 language-model config."""
    return KVShape(
        layers=text_config.num_hidden_layers,
        kv_heads=text_config.num_key_value_heads,
        head_dim=text_config.head_dim,
        dtype_bytes=dtype_bytes,
    )


def state_bytes(rows: int, max_positions: int) -> int:
    """The per-row decode state beside the cache: a token history as wide as the context
    (int64, so compiled code never sees a new width) and five scalars per row."""
    return rows * (max_positions + 5) * 8


def workspace_bytes(text_config: Any, rows: int, prompt_length: int, dtype_bytes: int) -> int:
    """An upper estimate of the transient memory of one call: a prefill chunk's activations
    (per token: ~16 hidden-sized vectors, and for each routed expert its gathered input, gate/up
    and output in fp32) plus the float32 logits of every row (prefill, guard, softmax)."""
    hidden = text_config.hidden_size
    k = getattr(text_config, "num_experts_per_tok", 0) or 0
    inter = getattr(text_config, "moe_intermediate_size", 0) or 0
    per_token = dtype_bytes * (16 * hidden + 6 * k * (hidden + inter))
    return rows * prompt_length * per_token + rows * text_config.vocab_size * 16


def length_bucket(length: int, max_positions: int) -> int:
    """The cache length a call of `length` positions gets: the next power of two from
    `MIN_LENGTH`, capped at the model's context."""
    if length > max_positions:
        raise BackendMemoryError(f"{length} positions exceed the model's context of {max_positions}")
    bucket = MIN_LENGTH
    while bucket < length:
        bucket *= 2
    return min(bucket, max_positions)


def buckets(max_positions: int) -> list[int]:
    """Every cache length `length_bucket` can give for a model of this context."""
    out = [length_bucket(1, max_positions)]
    while out[-1] < max_positions:
        out.append(length_bucket(out[-1] + 1, max_positions))
    return out


def card_bytes(device: Any) -> int:
    """Total memory of `device`: the GPU's, or the machine's RAM for the CPU."""
    if getattr(device, "type", str(device)) == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve_budget(max_memory: int | float | None, total: int) -> int | None:
    """`max_gpu_memory` as bytes: an int is bytes, a float in (0, 1] a share of `total`,
    None no budget (the card's own limit still raises `BackendMemoryError`)."""
    if max_memory is None:
        return None
    if isinstance(max_memory, bool):
        raise ValueError("max_gpu_memory must be bytes (int) or a share of the card (float)")
    if isinstance(max_memory, float):
        if not 0 < max_memory <= 1:
            raise ValueError(f"max_gpu_memory as a share of the card must be in (0, 1], not {max_memory}")
        return int(max_memory * total)
    if max_memory <= 0:
        raise ValueError(f"max_gpu_memory must be positive, not {max_memory}")
    return int(max_memory)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


__all__ = [
    "GROW_HEADROOM",
    "MIN_LENGTH",
    "KVShape",
    "buckets",
    "card_bytes",
    "gib",
    "kv_shape",
    "length_bucket",
    "resolve_budget",
    "state_bytes",
    "workspace_bytes",
]
