"""Triton kernels for the decode step on CUDA: routed experts and attention over the KV cache.

CPU-only installs (no Triton) never reach these kernels; `available(device)` says whether
they can run.
"""

from __future__ import annotations

import torch

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


def available(device: str) -> bool:
    """True where these Triton kernels can run (a CUDA device and Triton installed)."""
    return triton is not None and str(device).startswith("cuda")


def moe_gemv(x, gate_up, down, top_idx, top_w, *, block_n: int = 32, block_k: int = 128):
    """Routed-expert output for a few tokens: sum over k of w_k · down_e(silu(gate_e x) · up_e x).

    x (T, H); gate_up (E, 2I, H) and down (E, H, I) as the model stores them; top_idx and
    top_w (T, k). Returns (T, H) in x's dtype. Reads each selected expert's rows once.
    """
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


# ---------------------------------------------------------------------------------------------
# Decode attention over the static KV cache (split-K, "flash decoding").
#
# A decode step has one query per row. Eager attention over a cache slice costs about ten small
# kernels per layer (write K/V, mask, two matmuls, softmax, casts) and reads the cache up to a
# segment boundary. These two kernels read each row's cache only up to its own position, which
# they take from device memory, so one CUDA graph serves every cache length: the first splits
# the positions 0..pos-1 across programs and keeps per-split softmax statistics; the second
# merges them with this step's own key/value and writes that key/value into the cache at pos.

if triton is not None:

    @triton.jit
    def _attn_split_kernel(
        q_ptr, kc_ptr, vc_ptr, pos_ptr, m_ptr, l_ptr, acc_ptr,
        sq_b, sq_h, sc_b, sc_h, sc_l,
        SCALE: tl.constexpr, N_HEADS: tl.constexpr, GROUP: tl.constexpr, SPLITS: tl.constexpr,
        HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0).to(tl.int64)
        h = tl.program_id(1)
        s = tl.program_id(2)
        g = (h // GROUP).to(tl.int64)
        p = tl.load(pos_ptr + b)
        chunk = ((p + SPLITS - 1) // SPLITS + BLOCK - 1) // BLOCK * BLOCK
        lo = s * chunk
        hi = tl.minimum(lo + chunk, p)
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + b * sq_b + h * sq_h + d).to(tl.float32) * SCALE
        base = b * sc_b + g * sc_h
        m = tl.max(tl.full([BLOCK], -1.0e30, tl.float32), axis=0)
        l_sum = tl.sum(tl.zeros([BLOCK], tl.float32), axis=0)
        acc = tl.zeros([HEAD_DIM], tl.float32)
        for start in range(lo, hi, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < hi
            ptrs = base + offs[:, None] * sc_l + d[None, :]
            k = tl.load(kc_ptr + ptrs, mask=mask[:, None], other=0.0).to(tl.float32)
            v = tl.load(vc_ptr + ptrs, mask=mask[:, None], other=0.0).to(tl.float32)
            scores = tl.where(mask, tl.sum(k * q[None, :], axis=1), -1.0e30)
            m_new = tl.maximum(m, tl.max(scores, axis=0))
            alpha = tl.exp(m - m_new)
            w = tl.where(mask, tl.exp(scores - m_new), 0.0)
            l_sum = l_sum * alpha + tl.sum(w, axis=0)
            acc = acc * alpha + tl.sum(w[:, None] * v, axis=0)
            m = m_new
        row = (b * N_HEADS + h) * SPLITS + s
        tl.store(m_ptr + row, m)
        tl.store(l_ptr + row, l_sum)
        tl.store(acc_ptr + row * HEAD_DIM + d, acc)

    @triton.jit
    def _attn_merge_kernel(
        q_ptr, k_ptr, v_ptr, kc_ptr, vc_ptr, pos_ptr, m_ptr, l_ptr, acc_ptr, out_ptr,
        sq_b, sq_h, sk_b, sk_h, sv_b, sv_h, sc_b, sc_h, sc_l,
        SCALE: tl.constexpr, N_HEADS: tl.constexpr, GROUP: tl.constexpr, SPLITS: tl.constexpr, HEAD_DIM: tl.constexpr,
    ):  # fmt: skip
        b = tl.program_id(0).to(tl.int64)
        h = tl.program_id(1)
        g = (h // GROUP).to(tl.int64)
        p = tl.load(pos_ptr + b)
        d = tl.arange(0, HEAD_DIM)
        q = tl.load(q_ptr + b * sq_b + h * sq_h + d).to(tl.float32) * SCALE
        k_new = tl.load(k_ptr + b * sk_b + g * sk_h + d)
        v_new = tl.load(v_ptr + b * sv_b + g * sv_h + d)
        s_new = tl.sum(q * k_new.to(tl.float32), axis=0)
        rows = (b * N_HEADS + h) * SPLITS + tl.arange(0, SPLITS)
        m = tl.load(m_ptr + rows)
        l_part = tl.load(l_ptr + rows)
        acc = tl.load(acc_ptr + rows[:, None] * HEAD_DIM + d[None, :])
        m_all = tl.maximum(tl.max(m, axis=0), s_new)
        scale_s = tl.exp(m - m_all)
        w_new = tl.exp(s_new - m_all)
        denom = tl.sum(l_part * scale_s, axis=0) + w_new
        out = (tl.sum(acc * scale_s[:, None], axis=0) + w_new * v_new.to(tl.float32)) / denom
        tl.store(out_ptr + (b * N_HEADS + h) * HEAD_DIM + d, out.to(out_ptr.dtype.element_ty))
        if h % GROUP == 0:  # one program per key/value head writes this step into the cache
            at = b * sc_b + g * sc_h + p * sc_l + d
            tl.store(kc_ptr + at, k_new.to(kc_ptr.dtype.element_ty))
            tl.store(vc_ptr + at, v_new.to(vc_ptr.dtype.element_ty))


def attention_supported(head_dim: int) -> bool:
    """The attention kernels need a power-of-two head size (128 in DeepSeek-OCR 2)."""
    return head_dim >= 16 and head_dim & (head_dim - 1) == 0


def decode_attention(q, k, v, k_cache, v_cache, pos, scale: float, *, block: int = 32, programs: int = 512):
    """Attention of one new token per row over the cache, and the cache update.

    q (B, Hq, D); k, v (B, Hkv, D) for this step (last dimension contiguous); k_cache and
    v_cache (≥B, Hkv, L, D) contiguous; pos (B,) int64: this token's position, the cache holds
    positions 0..pos-1 of each row. Writes k, v at pos and returns (B, Hq·D) in q's dtype.
    `programs`: split the positions until rows × heads × splits reaches this many programs.
    """
    batch, n_heads, head_dim = q.shape
    n_kv = k.shape[1]
    # Enough programs to fill the card at batch 1, one split per row and head at large batch.
    splits = 1
    while splits < 32 and batch * n_heads * splits < programs:
        splits *= 2
    m = torch.empty(batch * n_heads * splits, device=q.device, dtype=torch.float32)
    l_part = torch.empty_like(m)
    acc = torch.empty(batch * n_heads * splits, head_dim, device=q.device, dtype=torch.float32)
    out = torch.empty(batch, n_heads, head_dim, device=q.device, dtype=q.dtype)
    sc = k_cache.stride()
    group = n_heads // n_kv
    _attn_split_kernel[(batch, n_heads, splits)](
        q, k_cache, v_cache, pos, m, l_part, acc,
        q.stride(0), q.stride(1), sc[0], sc[1], sc[2],
        SCALE=scale, N_HEADS=n_heads, GROUP=group, SPLITS=splits, HEAD_DIM=head_dim, BLOCK=block,
    )  # fmt: skip
    _attn_merge_kernel[(batch, n_heads)](
        q, k, v, k_cache, v_cache, pos, m, l_part, acc, out,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        sc[0], sc[1], sc[2],
        SCALE=scale, N_HEADS=n_heads, GROUP=group, SPLITS=splits, HEAD_DIM=head_dim,
    )  # fmt: skip
    return out.view(batch, n_heads * head_dim)


__all__ = ["attention_supported", "available", "decode_attention", "moe_gemv"]
