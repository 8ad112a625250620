"""Vision embeddings as bytes for the store: safetensors, with dtype, shape and model fingerprint.

A blob is a safetensors file (one or more named tensors) whose header metadata carries
`format`, `fingerprint` (the model that made the tensors), and per tensor its `dtype` and
`shape`, plus whatever small string facts the backend adds (the mode, the token count).
Unpacking checks the fingerprint before anything else, so embeddings made by another model
(another checkpoint, another vision tower) are refused with `RepresentationMismatch` rather
than fed to a decoder that would read them as noise.

    blob = pack({"image": features}, fingerprint="deepseek-ocr2:3f1c…", meta={"mode": "gundam"})
    packed = unpack(blob, fingerprint="deepseek-ocr2:3f1c…")
    packed.tensors["image"], packed.meta["mode"]

Bit-exact: bf16 and every other dtype round-trip unchanged through `bytes`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from safetensors import SafetensorError
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from ..errors import RepresentationMismatch

FORMAT = "optimem.embeddings/1"
_RESERVED = ("format", "fingerprint", "tensors")


@dataclass(frozen=True)
class PackedEmbeddings:
    """What `unpack` returns: the tensors (on the CPU), the fingerprint and the extra metadata."""

    tensors: dict[str, torch.Tensor]
    fingerprint: str
    meta: dict[str, str] = field(default_factory=dict)


def pack(
    tensors: Mapping[str, torch.Tensor] | torch.Tensor,
    *,
    fingerprint: str,
    meta: Mapping[str, object] | None = None,
) -> bytes:
    """Serialise `tensors` (a tensor is stored as "image") with the model fingerprint.

    Tensors are copied to the CPU and made contiguous; their dtype is kept as is.
    `meta` values are stored as strings (JSON for anything that is not a str).
    """
    if not fingerprint:
        raise ValueError("pack() needs the fingerprint of the model that made the tensors")
    if isinstance(tensors, torch.Tensor):
        tensors = {"image": tensors}
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    header = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "tensors": json.dumps(
            {
                n: {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}
                for n, t in cpu.items()
            },
            sort_keys=True,
        ),
    }
    for key, value in (meta or {}).items():
        if key in _RESERVED:
            raise ValueError(f"metadata key {key!r} is reserved")
        header[key] = value if isinstance(value, str) else json.dumps(value)
    return _st_save(cpu, metadata=header)


def read_header(blob: bytes) -> dict[str, str]:
    """The metadata of a blob without loading its tensors (cheap: reads the JSON header)."""
    if not isinstance(blob, bytes | bytearray | memoryview) or len(blob) < 8:
        raise RepresentationMismatch("stored representation is not an optimem embeddings blob")
    size = int.from_bytes(bytes(blob[:8]), "little")
    if size <= 0 or 8 + size > len(blob):
        raise RepresentationMismatch("stored representation is truncated or not safetensors")
    try:
        header = json.loads(bytes(blob[8 : 8 + size]))
    except ValueError:
        raise RepresentationMismatch("stored representation has an unreadable header") from None
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise RepresentationMismatch(
            f"stored representation has format {metadata.get('format')!r}, expected {FORMAT!r}"
        )
    return metadata


def fingerprint_of(blob: bytes) -> str:
    """The fingerprint of the model that made a blob."""
    return read_header(blob)["fingerprint"]


def unpack(blob: bytes, *, fingerprint: str | None = None) -> PackedEmbeddings:
    """Load a blob made by `pack`.

    Raises `RepresentationMismatch` when `fingerprint` is given and differs from the one the
    blob was made with, or when the blob is not an embeddings blob, or its declared dtype or
    shape disagree with the tensors it holds.
    """
    metadata = read_header(blob)
    stored = metadata.get("fingerprint", "")
    if fingerprint is not None and stored != fingerprint:
        raise RepresentationMismatch(
            f"stored embeddings were made by model {stored!r}, not by the loaded {fingerprint!r}"
        )
    try:
        tensors = _st_load(bytes(blob))
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise RepresentationMismatch(f"stored embeddings cannot be read: {exc}") from None
    declared = json.loads(metadata.get("tensors", "{}"))
    if set(declared) != set(tensors):
        raise RepresentationMismatch("stored embeddings do not hold the tensors their header lists")
    for name, spec in declared.items():
        t = tensors[name]
        if str(t.dtype).removeprefix("torch.") != spec["dtype"] or list(t.shape) != spec["shape"]:
            raise RepresentationMismatch(f"stored tensor {name!r} disagrees with its declared dtype/shape")
    meta = {k: v for k, v in metadata.items() if k not in _RESERVED}
    return PackedEmbeddings(tensors, stored, meta)


__all__ = ["FORMAT", "PackedEmbeddings", "fingerprint_of", "pack", "read_header", "unpack"]
