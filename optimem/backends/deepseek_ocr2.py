"""DeepSeek-OCR 2 backend: transformers' native model; stores vision embeddings; fast batched decode.

What it does
    encode(page)   runs the vision tower (SAM + Qwen2 encoder) and the projector once and
                   returns the embeddings the decoder consumes, as safetensors bytes carrying
                   dtype, shape and the model's fingerprint (see `embeddings.py`).
    decode(page)   generates from the stored embeddings without running the vision encoder.
                   Embeddings from another model are never fed to this one: the page is
                   re-encoded from its image, a warning is logged and
                   `Decoded.extra["reencoded"]` is True.
    decode_many    reads many pages in one batched generation.

Modes
    DeepSeek-OCR 2 has one dynamic mode: a 1024 global view (256 tokens) plus 0-6 tiles of
    768 (144 each), then one view separator. optimem's ladder maps onto three budgets the
    processor offers (see `MODE_VIEWS`), so the decoder sees 257 + 144·k → 257 → 145 image
    positions, not DeepSeek-OCR v1's 64/100/256/400 tiers.

Speed (CUDA)
    Decoding uses its own static-KV-cache loop over the model's own weights (`StaticDecoder`):
    prefill per page, then one CUDA graph per (batch, length) that runs a whole decode step
    (embedding → 12 layers → logits → repetition guard → greedy pick) with no host sync; the
    routed experts run through Triton matrix-vector kernels for small batches and grouped GEMM
    for large ones. transformers' `generate` is kept as `engine="hf"` (the reference path).

Weights
    `model=` (a directory or hub id), else $OPTIMEM_DEEPSEEK_OCR2_MODEL, else
    deepseek-community/DeepSeek-OCR-2 if it is already in the local Hugging Face cache. Files
    are loaded with local_files_only=True unless `allow_download=True`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BackendError, RepresentationMismatch
from ..modes import Mode
from . import _torch
from .base import Backend, Capabilities, Decoded, PageInput

_torch.require_torch("deepseek-ocr2")

import torch  # noqa: E402  (after the friendly import check above)
import torch.nn.functional as F  # noqa: E402

from . import embeddings as emb  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_MODEL = "deepseek-community/DeepSeek-OCR-2"
MODEL_ENV = "OPTIMEM_DEEPSEEK_OCR2_MODEL"
PROMPTS = {
    "free": "<image>\nFree OCR.",
    "markdown": "<image>\n<|grounding|>Convert the document to markdown.",
}
"""DeepSeek's own prompts: plain text for recall, markdown with layout as an option."""


# ---------------------------------------------------------------------------------------------
# Modes


@dataclass(frozen=True)
class View:
    """One of the three image budgets DeepSeek-OCR 2's processor offers."""

    name: str
    processor_kwargs: dict
    base_tokens: int
    """Image positions for a global view alone (256 or 144 queries + the view separator)."""
    tiles: bool = False
    """Adds 768 tiles (144 positions each), 2-6 of them chosen by the page's aspect ratio."""


TILED = View("1024 global + 768 tiles", {"crop_to_patches": True}, 257, tiles=True)
GLOBAL_1024 = View("1024 global", {"crop_to_patches": False, "tile_size": 1024}, 257)
GLOBAL_768 = View("768 global", {"crop_to_patches": False, "size": {"height": 768, "width": 768}}, 145)
# `crop_to_patches=False` alone is a trap: the processor then writes 257 placeholders while the
# vision tower returns 145 rows (its global view falls back to the 768 tile size).

MODE_VIEWS: dict[Mode, View] = {
    Mode.GUNDAM: TILED,  # 1280 page → 1024 global + 2×2 tiles of 768 = 833
    Mode.LARGE: GLOBAL_1024,  # 1280 page read at 1024: 257 (no 1280 view in OCR 2)
    Mode.BASE: GLOBAL_1024,  # 257
    Mode.SMALL: GLOBAL_768,  # 640 page read at 768: 145
    Mode.TINY: GLOBAL_768,  # 512 page read at 768: 145 (the blur of aging stays in the pixels)
}
NATIVE_MODES = frozenset({Mode.GUNDAM, Mode.BASE, Mode.SMALL})


def tile_grid(width: int, height: int, min_tiles: int = 2, max_tiles: int = 6) -> tuple[int, int]:
    """(columns, rows) of 768 tiles the processor cuts a page of this size into; (0, 0) if none."""
    if max(width, height) <= 768:
        return (0, 0)
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        get_optimal_tiled_canvas,
    )

    return get_optimal_tiled_canvas((height, width), (768, 768), min_tiles, max_tiles)


def image_positions(mode: Mode, width: int | None = None, height: int | None = None) -> int:
    """Image positions the decoder sees for a page at `mode` (default: the square mode canvas)."""
    view = MODE_VIEWS[Mode.parse(mode)]
    if not view.tiles:
        return view.base_tokens
    side = Mode.parse(mode).canvas
    cols, rows = tile_grid(width or side, height or side)
    return view.base_tokens + 144 * cols * rows


# ---------------------------------------------------------------------------------------------
# The decode engine


def tiny_config(
    *,
    vocab_size: int,
    image_token_id: int,
    bos_token_id: int,
    eos_token_id: int,
    max_position_embeddings: int = 2048,
    initializer_ranges: tuple[float, float, float] | None = None,
):
    """A DeepSeek-OCR 2 config with the real vision geometry and tiny widths, for tests and
    CPU smoke runs of random models: SAM keeps 1024 px images and 16 px patches, so pages
    still cost 257 / 145 / 257 + 144·k image tokens. The encoder width must equal SAM's last
    downsample channel count. `initializer_ranges` (SAM, encoder, text) widen the random init
    so that images visibly change the generated tokens."""
    from transformers import DeepseekOcr2Config

    sam, enc, text = ({}, {}, {}) if initializer_ranges is None else (
        {"initializer_range": initializer_ranges[0]},
        {"initializer_range": initializer_ranges[1]},
        {"initializer_range": initializer_ranges[2]},
    )  # fmt: skip
    return DeepseekOcr2Config(
        vision_config={
            "sam_config": {
                "hidden_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "global_attn_indexes": [1],
                "output_channels": 32,
                "downsample_channels": [32, 64],
                "mlp_dim": 64,
                **sam,
            },
            "encoder_config": {
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "intermediate_size": 128,
                "vocab_size": 1,
                **enc,
            },
        },
        text_config={
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "n_routed_experts": 8,
            "num_experts_per_tok": 2,
            "moe_intermediate_size": 32,
            "n_shared_experts": 1,
            "mlp_layer_types": ["dense", "sparse"],
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
            "max_position_embeddings": max_position_embeddings,
            **text,
        },
        image_token_id=image_token_id,
    )


class _Layer:
    """One decoder layer's weights, laid out for the decode loop (views of the model's own)."""

    def __init__(self, layer: Any, dtype: torch.dtype) -> None:
        attn = layer.self_attn
        self.ln1 = layer.input_layernorm.weight
        self.ln2 = layer.post_attention_layernorm.weight
        self.eps = layer.input_layernorm.variance_epsilon
        # One GEMM for q, k and v: a fused copy (3·H² per layer), the rest are the model's tensors.
        self.wqkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).detach()
        self.bqkv = None
        if attn.q_proj.bias is not None:
            self.bqkv = torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]).detach()
        self.wo = attn.o_proj.weight
        self.bo = attn.o_proj.bias
        mlp = layer.mlp
        self.sparse = hasattr(mlp, "experts")
        if self.sparse:
            self.router = mlp.gate.weight.detach().float()
            self.top_k = mlp.gate.top_k
            self.scale = mlp.gate.routed_scaling_factor
            if mlp.gate.topk_method != "greedy":
                raise BackendError(f"router {mlp.gate.topk_method!r} is not supported by the fast decoder")
            self.gate_up = mlp.experts.gate_up_proj
            self.down = mlp.experts.down_proj
            self.n_experts = self.gate_up.shape[0]
            shared = mlp.shared_experts
        else:
            shared = mlp
        self.sh_gate_up = torch.cat([shared.gate_proj.weight, shared.up_proj.weight]).detach()
        self.sh_down = shared.down_proj.weight


class StaticDecoder:
    """Greedy decoding with a static KV cache over DeepSeek-OCR 2's language model weights.

    It reads the weights of a loaded `DeepseekOcr2ForConditionalGeneration` (no copies except
    a fused q/k/v matrix) and runs prefill + decode itself, so that a decode step is a fixed
    sequence of kernels that a CUDA graph can replay. On the CPU the same code runs eagerly;
    tests check that its tokens equal transformers' `generate`.
    """

    GRAPH_BATCHES = (1, 8, 32, 64, 128, 256)
    """Batch sizes decoding is padded to on CUDA (each one compiles and captures once)."""

    def __init__(
        self,
        model: Any,
        *,
        cuda_graphs: bool | None = None,
        moe: str = "auto",
        attention: str = "auto",
        gemv_max_rows: int = 48,
        compile: bool | None = None,
        prefill_batch: int = 16,
    ) -> None:
        lm = model.model.language_model
        cfg = lm.config
        self.device = lm.embed_tokens.weight.device
        self.dtype = lm.embed_tokens.weight.dtype
        self.cuda = self.device.type == "cuda"
        self.embed = lm.embed_tokens.weight
        self.layers = [_Layer(layer, self.dtype) for layer in lm.layers[: cfg.num_hidden_layers]]
        self.norm = lm.norm.weight
        self.norm_eps = lm.norm.variance_epsilon
        self.lm_head = model.lm_head.weight
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = cfg.head_dim
        self.hidden = cfg.hidden_size
        self.vocab = self.lm_head.shape[0]
        self.scaling = self.head_dim**-0.5
        self.max_positions = cfg.max_position_embeddings
        # RoPE table from the model's own rotary module, so positions match generate() exactly.
        with torch.no_grad():
            pos = torch.arange(self.max_positions, device=self.device)[None]
            probe = torch.zeros(1, device=self.device, dtype=self.dtype)
            cos, sin = lm.rotary_emb(probe, pos)
        self.cos, self.sin = cos[0].contiguous(), sin[0].contiguous()
        self.cuda_graphs = self.cuda if cuda_graphs is None else (cuda_graphs and self.cuda)
        if moe == "auto":
            moe = (
                "gemv" if _torch.moe_gemv_available(str(self.device)) else "grouped" if self.cuda else "loop"
            )
        if moe not in ("gemv", "grouped", "loop"):
            raise ValueError(f"moe must be gemv, grouped, loop or auto, not {moe!r}")
        self.moe = moe
        self.gemv_max_rows = gemv_max_rows
        self.prefill_batch = prefill_batch
        self.last_stats: dict[str, float] = {}
        if attention == "auto":
            attention = "math"
        if attention not in ("math", "sdpa"):
            raise ValueError(f"attention must be math, sdpa or auto, not {attention!r}")
        self.attention = attention
        # torch.compile fuses the step's many small kernels (norms, RoPE, routing, guard). The
        # attention (`_attend`) stays outside, so a compilation depends on the batch size only
        # and serves every cache length: the warm-up (about 20 s on an H100 per graph batch
        # size) is paid once per process. CUDA graphs then remove the launch overhead.
        self.compile = self.cuda if compile is None else (compile and self.cuda)
        pieces = {"qkv": self._qkv, "dense": self._out_dense, "sparse": self._out_sparse, "head": self._head}
        if self.compile:
            pieces = {name: torch.compile(fn, dynamic=False) for name, fn in pieces.items()}
        self._c = pieces
        self._step_fn = self._step
        self._graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self._guards: dict[tuple, tuple] = {}
        self.eos = torch.zeros((), dtype=torch.long, device=self.device)
        self.stop_at_eos = torch.zeros((), dtype=torch.bool, device=self.device)
        self._pool = None
        self._cap: tuple[int, int] = (0, 0)
        self.k_cache: list[torch.Tensor] = []
        self.v_cache: list[torch.Tensor] = []
        self._lock = threading.Lock()

    # ----- building blocks -----

    def _rms(self, x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return w * h.to(dtype)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _mlp(self, h: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
        g, u = F.linear(h, gate_up).chunk(2, dim=-1)
        return F.linear(F.silu(g) * u, down)

    def _ffn(self, lay: _Layer, h: torch.Tensor) -> torch.Tensor:
        """Feed-forward of a prefill chunk (h already normed): dense MLP, or router + experts."""
        if not lay.sparse:
            return self._mlp(h, lay.sh_gate_up, lay.sh_down)
        scores = F.linear(h.float(), lay.router).softmax(dim=-1)
        w, idx = torch.topk(scores, k=lay.top_k, dim=-1, sorted=False)
        routed = self._routed(h, lay.gate_up, lay.down, idx, w * lay.scale)
        return routed + self._mlp(h, lay.sh_gate_up, lay.sh_down)

    # ----- cache -----

    def _ensure_cache(self, batch: int, length: int) -> None:
        cap_b, cap_l = self._cap
        if batch <= cap_b and length <= cap_l:
            return
        batch, length = max(batch, cap_b), max(length, cap_l)
        self._graphs.clear()
        self._pool = None  # captured graphs died with the old cache; start a fresh pool
        self.k_cache = self.v_cache = []
        if self.cuda:
            torch.cuda.empty_cache()
        shape = (batch, self.n_kv, length, self.head_dim)
        self.k_cache = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in self.layers]
        self.v_cache = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in self.layers]
        self._cap = (batch, length)
        # Per-row decode state, read and written in place by the (graph-captured) step.
        self.tok = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.pos = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.done = torch.zeros(batch, dtype=torch.bool, device=self.device)
        self.logp = torch.zeros(batch, dtype=torch.float32, device=self.device)
        self.ngen = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.step_t = torch.zeros((), dtype=torch.long, device=self.device)
        self.hist = torch.zeros(batch, length, dtype=torch.long, device=self.device)

    # ----- prefill -----

    def _prefill(self, rows: list[int], x: torch.Tensor) -> torch.Tensor:
        """Run prompts of one length (x: (b, T, H)) through the layers, filling cache `rows`;
        returns the logits of each prompt's last position, (b, V)."""
        b, t, _ = x.shape
        cos, sin = self.cos[:t][None, None], self.sin[:t][None, None]
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        index = torch.tensor(rows, device=self.device)
        for i, lay in enumerate(self.layers):
            h = self._rms(x, lay.ln1, lay.eps)
            qkv = F.linear(h, lay.wqkv, lay.bqkv).view(b, t, nh + 2 * nkv, hd).transpose(1, 2)
            q, k, v = qkv.split([nh, nkv, nkv], dim=1)
            q, k = self._rope(q, cos, sin), self._rope(k, cos, sin)
            self.k_cache[i][index, :, :t] = k
            self.v_cache[i][index, :, :t] = v
            o = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, scale=self.scaling, enable_gqa=nkv != nh
            )
            x = x + F.linear(o.transpose(1, 2).reshape(b, t, nh * hd), lay.wo, lay.bo)
            h = self._rms(x, lay.ln2, lay.eps)
            x = x + self._ffn(lay, h.view(b * t, -1)).view(b, t, -1)
        last = self._rms(x[:, -1], self.norm, self.norm_eps)
        return F.linear(last, self.lm_head).float()

    # ----- one decode step (graph-safe: no host sync, static shapes) -----

    def _qkv(self, x, ln, eps: float, wqkv, bqkv, cos, sin):
        """Norm, fused q/k/v projection and RoPE for one decode token per row."""
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        h = self._rms(x, ln, eps)
        qkv = F.linear(h, wqkv, bqkv).view(x.shape[0], nh + 2 * nkv, hd)
        q, k, v = qkv.split([nh, nkv, nkv], dim=1)
        return self._rope(q, cos, sin), self._rope(k, cos, sin), v

    def _out_dense(self, x, o, wo, bo, ln, eps: float, gate_up, down):
        x = x + F.linear(o, wo, bo)
        return x + self._mlp(self._rms(x, ln, eps), gate_up, down)

    def _out_sparse(self, x, o, wo, bo, ln, eps: float, router, scale: float, top_k: int,
                    gate_up, down, sh_gate_up, sh_down):  # fmt: skip
        x = x + F.linear(o, wo, bo)
        h = self._rms(x, ln, eps)
        scores = F.linear(h.float(), router).softmax(dim=-1)
        w, idx = torch.topk(scores, k=top_k, dim=-1, sorted=False)
        routed = self._routed(h, gate_up, down, idx, w * scale)
        return x + routed + self._mlp(h, sh_gate_up, sh_down)

    def _routed(self, h, gate_up, down, idx, w):
        n, k = idx.shape
        if self.moe == "gemv" and n * k <= self.gemv_max_rows:
            return _torch.moe_gemv(h, gate_up, down, idx, w)
        if self.moe == "loop":
            out = torch.zeros_like(h)
            for e in idx.unique().tolist():
                tok, slot = torch.where(idx == e)
                g, u = F.linear(h[tok], gate_up[e]).chunk(2, dim=-1)
                y = F.linear(F.silu(g) * u, down[e]) * w[tok, slot, None]
                out.index_add_(0, tok, y.to(out.dtype))
            return out
        n_experts = gate_up.shape[0]
        flat = idx.reshape(-1)
        order = torch.argsort(flat, stable=True)
        if self.cuda:
            counts = torch.histc(flat.int(), bins=n_experts, min=0, max=n_experts - 1)
        else:
            counts = torch.bincount(flat, minlength=n_experts)
        offs = torch.cumsum(counts, 0, dtype=torch.int32)
        gu = _grouped_mm(h[order // k], gate_up.transpose(-2, -1), offs)
        g, u = gu.chunk(2, dim=-1)
        y = _grouped_mm(F.silu(g) * u, down.transpose(-2, -1), offs)
        y = y.float() * w.reshape(-1)[order, None]
        out = torch.zeros(n * k, h.shape[-1], device=h.device, dtype=torch.float32)
        out.index_copy_(0, order, y)
        return out.view(n, k, -1).sum(1).to(h.dtype)

    def _head(self, x, batch: int) -> None:
        x = self._rms(x, self.norm, self.norm_eps)
        self._pick(F.linear(x, self.lm_head).float(), batch)

    def _step(self, batch: int, length: int) -> None:
        """One decode step for all rows: the compiled pieces (`_c`) around the attention."""
        c = self._c
        pos = self.pos[:batch]
        x = F.embedding(self.tok[:batch], self.embed)
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]
        for i, lay in enumerate(self.layers):
            q, k, v = c["qkv"](x, lay.ln1, lay.eps, lay.wqkv, lay.bqkv, cos, sin)
            o = self._attend(i, q, k, v, batch, length)
            if lay.sparse:
                x = c["sparse"](x, o, lay.wo, lay.bo, lay.ln2, lay.eps, lay.router, lay.scale,
                                lay.top_k, lay.gate_up, lay.down, lay.sh_gate_up, lay.sh_down)  # fmt: skip
            else:
                x = c["dense"](x, o, lay.wo, lay.bo, lay.ln2, lay.eps, lay.sh_gate_up, lay.sh_down)
        c["head"](x, batch)
        pos.add_(1)

    @torch.compiler.disable
    def _attend(self, i: int, q, k, v, batch: int, length: int) -> torch.Tensor:
        """Write this step's K/V at each row's position and attend over the first `length`
        cache positions. Kept out of torch.compile: the compiled code then depends on the
        batch size only, not on the cache length, so one compilation serves every length."""
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        pos = self.pos[:batch]
        rows = torch.arange(batch, device=self.device)
        kc = self.k_cache[i][:batch, :, :length]
        vc = self.v_cache[i][:batch, :, :length]
        kc[rows, :, pos] = k
        vc[rows, :, pos] = v
        visible = torch.arange(length, device=self.device)[None] <= pos[:, None]
        if self.attention == "sdpa":
            return F.scaled_dot_product_attention(
                q[:, :, None],
                kc,
                vc,
                attn_mask=visible[:, None, None],
                scale=self.scaling,
                enable_gqa=nkv != nh,
            ).reshape(batch, nh * hd)
        qg = q.view(batch, nkv, nh // nkv, hd)
        s = torch.matmul(qg, kc.transpose(-1, -2)).float() * self.scaling
        s = s.masked_fill(~visible[:, None, None], float("-inf"))
        return torch.matmul(s.softmax(-1).to(self.dtype), vc).reshape(batch, nh * hd)

    def _pick(self, logits: torch.Tensor, batch: int) -> None:
        """Repetition guard, greedy choice, bookkeeping: all on the device."""
        logits = self._guard(logits, batch)
        logprobs = logits.log_softmax(-1)
        nxt = logits.argmax(-1)
        live = ~self.done[:batch]
        self.logp[:batch] += torch.where(live, logprobs.gather(1, nxt[:, None])[:, 0], 0.0)
        self.ngen[:batch] += live.long()
        nxt = torch.where(live, nxt, self.eos)
        self.hist[:batch].index_copy_(1, self.step_t.view(1), nxt[:, None])
        self.done[:batch] |= (nxt == self.eos) & self.stop_at_eos
        self.tok[:batch] = nxt
        self.step_t += 1

    def _guard(self, logits: torch.Tensor, batch: int) -> torch.Tensor:
        """DeepSeek's no-repeat n-gram rule: within the last `window` generated tokens, a token
        that would complete an n-gram already seen there is banned (whitelisted ones excepted)."""
        n, window = self.ngram, self.window
        if n <= 0 or window < n:
            return logits
        t = self.step_t
        hist = self.hist[:batch]
        last = hist.shape[1] - 1
        prefix_idx = (t - (n - 1) + self.arange_n[: n - 1]).clamp(0, last)
        prefix = hist[:, prefix_idx]  # (B, n-1)
        starts = t - window + self.arange_w  # candidate n-gram starts, (C,)
        grams = hist[:, (starts[:, None] + self.arange_n[None]).clamp(0, last)]  # (B, C, n)
        hit = (grams[..., :-1] == prefix[:, None]).all(-1) & (starts >= 0)[None]
        banned = grams[..., -1]
        if self.whitelist is not None:
            hit &= ~torch.isin(banned, self.whitelist)
        padded = F.pad(logits, (0, 1))
        padded.scatter_(1, torch.where(hit, banned, self.vocab), float("-inf"))
        return padded[:, : self.vocab]

    # ----- generation -----

    def generate(
        self,
        prompts: Sequence[torch.Tensor],
        *,
        max_new_tokens: int,
        eos_token_id: int | None,
        ngram_size: int = 20,
        ngram_window: int | None = 90,
        whitelist: Sequence[int] = (),
        ignore_eos: bool = False,
    ) -> list[tuple[list[int], float]]:
        """Greedy-decode each prompt (a (T, H) tensor of input embeddings) in one batch.

        Returns, per prompt, the generated token ids (EOS excluded) and the mean log-probability
        of the chosen tokens. `ignore_eos` forces exactly max_new_tokens (for timing).
        """
        with self._lock, torch.inference_mode():
            return self._generate(
                prompts, max_new_tokens, eos_token_id, ngram_size, ngram_window, whitelist, ignore_eos
            )

    SEGMENT = 256
    """Decode steps attend over the cache up to the next multiple of this many positions past
    the longest row, so attention reads what has been written, not the whole allocation."""

    def _setup(self, n, longest, max_new, eos, ngram, window, whitelist, ignore_eos):
        """Size the cache and set the per-call state; returns (batch, length, guard key)."""
        batch = n
        if self.cuda_graphs:
            batch = next((b for b in self.GRAPH_BATCHES if b >= n), n)
        length = _round_up(longest + max_new, self.SEGMENT)
        if longest + max_new > self.max_positions:
            raise BackendError(
                f"prompt of {longest} positions + {max_new} new tokens exceeds the model's "
                f"{self.max_positions} positions"
            )
        length = min(length, self.max_positions)
        self._ensure_cache(batch, length)
        # Tensors a captured graph reads are updated in place, never replaced.
        self.eos.fill_(0 if eos is None else eos)
        self.stop_at_eos.fill_(not ignore_eos and eos is not None)
        window = min(window or max_new, max_new)
        guard = (ngram, window, tuple(whitelist))
        if guard not in self._guards:
            self._guards[guard] = (
                torch.arange(max(ngram, 1), device=self.device),
                torch.arange(max(window - ngram + 1, 1), device=self.device),
                torch.tensor(list(whitelist), device=self.device) if whitelist else None,
            )
        self.ngram, self.window = ngram, window
        self.arange_n, self.arange_w, self.whitelist = self._guards[guard]
        self.done.zero_()
        self.done[n:batch] = True
        self.logp.zero_()
        self.ngen.zero_()
        self.hist.zero_()
        self.step_t.zero_()
        self.pos.zero_()
        return batch, length, guard

    def warmup(
        self,
        batch_sizes: Sequence[int] = (1,),
        prompt_lengths: Sequence[int] = (837,),
        *,
        max_new_tokens: int,
        eos_token_id: int | None,
        ngram_size: int = 20,
        ngram_window: int | None = 90,
        whitelist: Sequence[int] = (),
    ) -> float:
        """Compile the step and capture the CUDA graphs these shapes will use; seconds spent."""
        t0 = time.perf_counter()
        if not self.cuda_graphs:
            return 0.0
        with self._lock, torch.inference_mode():
            for n in batch_sizes:
                for longest in prompt_lengths:
                    batch, length, guard = self._setup(
                        n, longest, max_new_tokens, eos_token_id, ngram_size, ngram_window, whitelist, False
                    )
                    for end in range(longest + 1, longest + max_new_tokens, self.SEGMENT):
                        seg = min(length, _round_up(end + 1, self.SEGMENT))
                        self._graph((batch, seg, *guard))
        _sync(self.device)
        return time.perf_counter() - t0

    def _generate(self, prompts, max_new, eos, ngram, window, whitelist, ignore_eos):
        n = len(prompts)
        if n == 0:
            return []
        longest = max(p.shape[0] for p in prompts)
        batch, length, guard = self._setup(n, longest, max_new, eos, ngram, window, whitelist, ignore_eos)
        t0 = time.perf_counter()
        first = torch.zeros((batch, self.vocab), device=self.device)
        by_length: dict[int, list[int]] = {}
        for row, p in enumerate(prompts):
            by_length.setdefault(p.shape[0], []).append(row)
        for t, rows in by_length.items():
            for start in range(0, len(rows), self.prefill_batch):
                chunk = rows[start : start + self.prefill_batch]
                x = torch.stack([prompts[r] for r in chunk]).to(self.device, self.dtype)
                first[chunk] = self._prefill(chunk, x)
                self.pos[chunk] = t
        self._pick(first, batch)
        _sync(self.device)
        t1 = time.perf_counter()
        graph, graph_seg = None, -1
        for i in range(1, max_new):
            # Step i writes position (prompt length + i - 1); attend up to the segment holding it.
            seg = min(length, _round_up(longest + i, self.SEGMENT))
            if not self.cuda_graphs:
                self._step_fn(batch, seg)
            else:
                if seg != graph_seg:
                    graph, graph_seg = self._graph((batch, seg, *guard)), seg
                graph.replay()
            if not ignore_eos and (i % 32 == 0 or not self.cuda) and bool(self.done[:n].all()):
                break
        steps = int(self.step_t)
        t2 = time.perf_counter()
        self.last_stats = {
            "rows": n,
            "batch": batch,
            "length": length,
            "steps": steps,
            "prefill_s": t1 - t0,
            "decode_s": t2 - t1,
            "decode_tokens_per_s": n * (steps - 1) / max(t2 - t1, 1e-9),
        }
        hist = self.hist[:n, :steps].tolist()
        logp = self.logp[:n].tolist()
        ngen = self.ngen[:n].tolist()
        out = []
        for row in range(n):
            ids = hist[row]
            if eos is not None and not ignore_eos and eos in ids:
                ids = ids[: ids.index(eos)]
            out.append((ids, logp[row] / max(ngen[row], 1)))
        return out

    def _graph(self, key: tuple) -> torch.cuda.CUDAGraph:
        """The captured decode step for (batch, length, guard settings), captured on first use."""
        if key in self._graphs:
            return self._graphs[key]
        batch, length = key[0], key[1]
        # Warm-up mutates the decode state: keep it and put it back after capture.
        saved = [
            t.clone() for t in (self.tok, self.pos, self.done, self.logp, self.ngen, self.hist, self.step_t)
        ]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                try:
                    self._step_fn(batch, length)
                except Exception as exc:  # a compiler failure must not stop recall
                    if not self.compile:
                        raise
                    log.warning("torch.compile of the decode step failed (%s); decoding eagerly", exc)
                    self.compile = False
                    self._c = {"qkv": self._qkv, "dense": self._out_dense, "sparse": self._out_sparse,
                               "head": self._head}  # fmt: skip
                    self._step_fn(batch, length)
        torch.cuda.current_stream().wait_stream(stream)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._step_fn(batch, length)
        for dst, src in zip(
            (self.tok, self.pos, self.done, self.logp, self.ngen, self.hist, self.step_t), saved, strict=True
        ):
            dst.copy_(src)
        self._graphs[key] = graph
        return graph


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def _grouped_mm(x: torch.Tensor, w: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    fn = getattr(F, "grouped_mm", None) or getattr(torch, "_grouped_mm", None)
    if fn is None:  # pragma: no cover - torch < 2.8
        raise BackendError("grouped GEMM needs torch >= 2.8; use moe='loop'")
    return fn(x, w, offs=offs)


# ---------------------------------------------------------------------------------------------
# The backend


class DeepseekOcr2Backend(Backend):
    """DeepSeek-OCR 2 through transformers' `DeepseekOcr2ForConditionalGeneration`.

    Args:
        model: a local directory or hub id (else $OPTIMEM_DEEPSEEK_OCR2_MODEL, else
            deepseek-community/DeepSeek-OCR-2 from the local cache).
        device: "cuda", "cpu", … (default: CUDA when visible).
        dtype: torch dtype or its name (default: bf16 on CUDA, float32 on the CPU).
        prompt: "free" (plain text, for recall), "markdown", or a prompt with "<image>".
        max_new_tokens: cap on tokens generated per page.
        ngram_size, ngram_window: the repetition guard (0 turns it off); DeepSeek uses 20/90.
        engine: "static" (own static-cache decoder, CUDA graphs on GPU), "hf" (transformers'
            generate), or "auto" (static).
        max_batch: pages per batched generation (default 64 on CUDA, 8 on the CPU).
        allow_download: fetch from the hub if not cached (default: $OPTIMEM_ALLOW_DOWNLOAD).
        attn_implementation: for the transformers modules (default SDPA; flash-attention 2 for
            the language model where flash_attn is installed).
        decoder_options: passed to `StaticDecoder` (cuda_graphs, moe, attention, compile, …).
        ignore_eos: always generate max_new_tokens (benchmarks on random weights only).
    """

    name = "deepseek-ocr2"
    capabilities = Capabilities(
        native_modes=NATIVE_MODES, stores_representation=True, batches=True, device="cuda"
    )

    def positions(self, mode: Mode) -> int:
        """Image positions DeepSeek-OCR 2 sees for a square page at `mode` (833 / 257 / 145)."""
        return image_positions(mode)

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        prompt: str = "free",
        max_new_tokens: int = 4096,
        ngram_size: int = 20,
        ngram_window: int | None = 90,
        engine: str = "auto",
        max_batch: int | None = None,
        allow_download: bool | None = None,
        attn_implementation: str | None = None,
        decoder_options: dict | None = None,
        ignore_eos: bool = False,
    ) -> None:
        self.device = _torch.pick_device(device)
        self.dtype = _torch.pick_dtype(self.device, dtype)
        self.source, self.local_only = _torch.resolve_weights(
            model,
            env_var=MODEL_ENV,
            default_id=DEFAULT_MODEL,
            label="DeepSeek-OCR 2",
            download=_torch.allow_download(allow_download),
        )
        self.attn_implementation = _torch.pick_attention(self.device, attn_implementation)
        self._configure(prompt, max_new_tokens, ngram_size, ngram_window, engine, max_batch, decoder_options)
        self.ignore_eos = ignore_eos
        self._model: Any = None
        self._processor: Any = None

    @classmethod
    def from_model(cls, model: Any, processor: Any, **options: Any) -> DeepseekOcr2Backend:
        """Wrap an already loaded model and processor (tests, benchmarks, custom loading)."""
        self = cls.__new__(cls)
        param = next(model.parameters())
        self.device = str(param.device)
        self.dtype = param.dtype
        self.source, self.local_only = options.pop("source", "<in-memory model>"), True
        self.attn_implementation = model.config._attn_implementation
        self._configure(
            options.pop("prompt", "free"),
            options.pop("max_new_tokens", 4096),
            options.pop("ngram_size", 20),
            options.pop("ngram_window", 90),
            options.pop("engine", "auto"),
            options.pop("max_batch", None),
            options.pop("decoder_options", None),
        )
        self.ignore_eos = bool(options.pop("ignore_eos", False))
        if options:
            raise TypeError(f"unknown options: {', '.join(options)}")
        self._model, self._processor = model.eval(), processor
        return self

    def _configure(
        self, prompt, max_new_tokens, ngram_size, ngram_window, engine, max_batch, decoder_options
    ):
        self.prompt = PROMPTS.get(prompt, prompt)
        if "<image>" not in self.prompt:
            raise ValueError(f"prompt must be 'free', 'markdown' or contain <image>; got {prompt!r}")
        if engine not in ("auto", "static", "hf"):
            raise ValueError(f"engine must be auto, static or hf, not {engine!r}")
        self.engine = "static" if engine == "auto" else engine
        self.max_new_tokens = max_new_tokens
        self.ngram_size = ngram_size
        self.ngram_window = ngram_window
        self.max_batch = max_batch or (64 if self.device.startswith("cuda") else 8)
        self.decoder_options = dict(decoder_options or {})
        self.capabilities = Capabilities(
            native_modes=NATIVE_MODES, stores_representation=True, batches=True, device=self.device
        )
        self._decoder: StaticDecoder | None = None
        self._fingerprint: str | None = None
        self._lock = threading.RLock()

    # ----- loading -----

    def load(self) -> None:
        """Load weights and processor now (otherwise the first encode/decode does)."""
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoProcessor, DeepseekOcr2ForConditionalGeneration

            attn: Any = self.attn_implementation
            if attn == "flash_attention_2":  # SAM's relative positions rule it out for vision
                attn = {"": "sdpa", "vision_config": "sdpa", "text_config": "flash_attention_2"}
            t0 = time.perf_counter()
            try:
                model = DeepseekOcr2ForConditionalGeneration.from_pretrained(
                    self.source, dtype=self.dtype, attn_implementation=attn, local_files_only=self.local_only
                )
                processor = AutoProcessor.from_pretrained(self.source, local_files_only=self.local_only)
            except OSError as exc:
                from ..errors import BackendUnavailable

                raise BackendUnavailable(
                    f"DeepSeek-OCR 2: could not load {self.source!r}: {exc}. Set {MODEL_ENV} or pass model=DIR."
                ) from exc
            self._model = model.to(self.device).eval()
            self._processor = processor
            log.info("loaded DeepSeek-OCR 2 from %s in %.1f s", self.source, time.perf_counter() - t0)

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def processor(self) -> Any:
        self.load()
        return self._processor

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def decoder(self) -> StaticDecoder:
        """The static-cache decoder (built on first use; holds the CUDA graphs)."""
        with self._lock:
            if self._decoder is None:
                self._decoder = StaticDecoder(self.model, **self.decoder_options)
            return self._decoder

    def fingerprint(self) -> str:
        """Model identity: its shape, plus a hash of the weights that make and place the
        embeddings (projector, view separator, queries, SAM patch embedding, token embeddings).
        Independent of dtype and of how the model was loaded."""
        if self._fingerprint is None:
            model = self.model
            h = hashlib.sha256()
            cfg = model.config
            shape = {
                "image_token_id": cfg.image_token_id,
                "text": [
                    cfg.text_config.hidden_size,
                    cfg.text_config.vocab_size,
                    cfg.text_config.num_hidden_layers,
                ],
                "encoder": [
                    cfg.vision_config.encoder_config.hidden_size,
                    cfg.vision_config.encoder_config.num_hidden_layers,
                ],
                "sam": [
                    cfg.vision_config.sam_config.hidden_size,
                    cfg.vision_config.sam_config.num_hidden_layers,
                ],
            }
            h.update(json.dumps(shape, sort_keys=True).encode())
            inner = model.model
            for tensor in (
                inner.multi_modal_projector.weight,
                inner.view_separator,
                inner.vision_tower.query_1024_resolution.weight,
                inner.vision_tower.query_768_resolution.weight,
                inner.vision_tower.sam_encoder.patch_embed.projection.weight,
                inner.language_model.embed_tokens.weight[:64],
            ):
                h.update(tensor.detach().float().cpu().numpy().tobytes())
            self._fingerprint = f"{self.name}:{h.hexdigest()[:20]}"
        return self._fingerprint

    def warmup(self, batch_sizes: Sequence[int] = (1,), modes: Sequence[Mode] = (Mode.GUNDAM,)) -> float:
        """Pay the decoder's one-time costs now (torch.compile, CUDA graph capture) for these
        batch sizes and page modes; returns the seconds spent. Optional: the first decode of
        each shape pays them otherwise."""
        if self.engine != "static":
            return 0.0
        lengths = sorted({len(self.prompt_ids(image_positions(m))) for m in modes})
        return self.decoder().warmup(
            [min(b, self.max_batch) for b in batch_sizes],
            lengths,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.tokenizer.eos_token_id,
            ngram_size=self.ngram_size,
            ngram_window=self.ngram_window,
            whitelist=self._whitelist(),
        )

    # ----- encode -----

    def view(self, mode: Mode) -> View:
        return MODE_VIEWS[Mode.parse(mode)]

    def encode(self, page: PageInput) -> bytes:
        return self.encode_many([page])[0]

    def encode_many(self, pages: Sequence[PageInput], batch_size: int = 16) -> list[bytes]:
        """Embeddings for several pages, batched through the vision tower per view kind."""
        feats = self._features(pages, batch_size)
        fp = self.fingerprint()
        return [
            emb.pack(
                {"image": f},
                fingerprint=fp,
                meta={"mode": p.mode.value, "view": self.view(p.mode).name, "positions": f.shape[0]},
            )
            for p, f in zip(pages, feats, strict=True)
        ]

    def _features(self, pages: Sequence[PageInput], batch_size: int = 16) -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(pages)
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(pages):
            groups.setdefault(self.view(p.mode).name, []).append(i)
        for name, idxs in groups.items():
            view = next(v for v in (TILED, GLOBAL_1024, GLOBAL_768) if v.name == name)
            for start in range(0, len(idxs), batch_size):
                chunk = idxs[start : start + batch_size]
                images = [pages[i].image.convert("RGB") for i in chunk]
                inputs = self.processor.image_processor(images, return_tensors="pt", **view.processor_kwargs)
                with self._lock, torch.inference_mode():
                    model = self.model
                    local = inputs.get("pixel_values_local")
                    result = model.get_image_features(
                        pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                        pixel_values_local=None if local is None else local.to(self.device, self.dtype),
                        num_local_patches=inputs["num_local_patches"],
                        return_dict=True,
                    ).pooler_output
                for i, f in zip(chunk, result, strict=True):
                    out[i] = f
        return out  # type: ignore[return-value]

    # ----- decode -----

    def prompt_ids(self, positions: int) -> list[int]:
        """Token ids of the prompt with `positions` image placeholders, as the processor makes them."""
        text = self.prompt.replace("<image>", "<image>" * positions, 1)
        return self.tokenizer(text)["input_ids"]

    def _stored_features(self, page: PageInput) -> tuple[torch.Tensor | None, str | None]:
        """Features from the page's stored blob, or (None, reason) when they cannot be used."""
        if page.representation is None:
            return None, None
        try:
            packed = emb.unpack(page.representation, fingerprint=self.fingerprint())
        except RepresentationMismatch as exc:
            return None, str(exc)
        if packed.meta.get("mode") not in (None, page.mode.value):
            return (
                None,
                f"stored embeddings are for mode {packed.meta.get('mode')}, page is {page.mode.value}",
            )
        return packed.tensors["image"], None

    def decode(self, page: PageInput) -> Decoded:
        return self.decode_many([page])[0]

    def decode_many(self, pages: Sequence[PageInput]) -> list[Decoded]:
        results: list[Decoded] = []
        for start in range(0, len(pages), self.max_batch):
            results.extend(self._decode_batch(pages[start : start + self.max_batch]))
        return results

    def _decode_batch(self, pages: Sequence[PageInput]) -> list[Decoded]:
        t0 = time.perf_counter()
        feats: list[torch.Tensor | None] = []
        extras: list[dict] = []
        redo: list[int] = []
        for i, page in enumerate(pages):
            f, problem = self._stored_features(page)
            extra: dict[str, Any] = {"reencoded": False}
            if f is None:
                redo.append(i)
                if problem is not None:
                    log.warning("DeepSeek-OCR 2: %s; re-encoding the page from its image", problem)
                    extra.update(reencoded=True, reason=problem)
                else:
                    extra["from_pixels"] = True
            feats.append(f)
            extras.append(extra)
        if redo:
            for i, f in zip(redo, self._features([pages[i] for i in redo]), strict=True):
                feats[i] = f
        prompts, n_prompt = [], []
        with torch.inference_mode():
            embed = self.model.get_input_embeddings()
            image_id = self.model.config.image_token_id
            for f in feats:
                assert f is not None
                ids = torch.tensor(self.prompt_ids(f.shape[0]), device=self.device)
                x = embed(ids)
                x[ids == image_id] = f.to(self.device, x.dtype)
                prompts.append(x)
                n_prompt.append(int(ids.numel()))
        generated = self._generate(prompts)
        seconds = (time.perf_counter() - t0) / max(len(pages), 1)
        out = []
        for ids_logp, extra, n in zip(generated, extras, n_prompt, strict=True):
            ids, mean_logp = ids_logp
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            extra.update(tokens=len(ids), positions=n, engine=self.engine)
            out.append(Decoded(text, float(math.exp(mean_logp)), self.name, seconds, None, extra))
        return out

    def _whitelist(self) -> list[int]:
        ids = []
        for token in ("<td>", "</td>"):  # DeepSeek exempts table cells from the guard
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.append(tid)
        return ids

    def _generate(self, prompts: list[torch.Tensor], **kw: Any) -> list[tuple[list[int], float]]:
        eos = self.tokenizer.eos_token_id
        max_new = kw.pop("max_new_tokens", self.max_new_tokens)
        kw.setdefault("ignore_eos", self.ignore_eos)
        if self.engine == "static":
            return self.decoder().generate(
                prompts,
                max_new_tokens=max_new,
                eos_token_id=eos,
                ngram_size=self.ngram_size,
                ngram_window=self.ngram_window,
                whitelist=self._whitelist(),
                **kw,
            )
        return [self._hf_generate(p, max_new, eos, **kw) for p in prompts]

    def _hf_generate(self, prompt: torch.Tensor, max_new: int, eos: int | None, ignore_eos: bool = False):
        """transformers' own generate from input embeddings (the reference path)."""
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                inputs_embeds=prompt[None],
                attention_mask=torch.ones(1, prompt.shape[0], dtype=torch.long, device=self.device),
                max_new_tokens=max_new,
                min_new_tokens=max_new if ignore_eos else None,
                do_sample=False,
                no_repeat_ngram_size=self.ngram_size or None,
                eos_token_id=eos,
                pad_token_id=eos,
                output_scores=True,
                return_dict_in_generate=True,
            )
        ids = out.sequences[0].tolist()
        logps = [float(s[0].float().log_softmax(-1)[i]) for s, i in zip(out.scores, ids, strict=False)]
        if eos is not None and not ignore_eos and eos in ids:
            ids = ids[: ids.index(eos)]
        return ids, sum(logps) / max(len(logps), 1)

    def close(self) -> None:
        self._decoder = None
        self._model = self._processor = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _strip_private(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_private(v) for k, v in obj.items() if not str(k).startswith("_")}
    return obj


__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ENV",
    "MODE_VIEWS",
    "PROMPTS",
    "DeepseekOcr2Backend",
    "StaticDecoder",
    "View",
    "image_positions",
    "tile_grid",
]
