"""StaticDecoder: DeepSeek-OCR 2's language model decoding from stored embeddings, fast.

A static-KV-cache loop over the loaded model's own weights: batched prefill per page, then one
CUDA graph per (batch, cache segment) that runs a whole decode step (embedding → layers →
logits → repetition guard → greedy pick) with no host sync; routed experts go through Triton
matrix-vector kernels at small batch and grouped GEMM above. Used by `deepseek_ocr2.py`;
transformers' `generate` stays there as the reference path (`engine="hf"`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from ..errors import BackendError
from . import _torch

_torch.require_torch("deepseek-ocr2")

import torch  # noqa: E402  (after the friendly import check above)
import torch.nn.functional as F  # noqa: E402

log = logging.getLogger(__name__)


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
