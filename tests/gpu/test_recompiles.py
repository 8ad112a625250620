"""A long mixed workload compiles a bounded number of times: once per batch bucket.

300 recalls of random batch sizes, page mixes and token counts through one backend (as a
service decodes for weeks): torch.compile may build graphs only on a call that brings a batch
bucket not seen before, never for a new page length, token count or cache length. Some calls
run long enough to move their rows to a larger cache-length bucket (1,024 → 2,048).
"""

from __future__ import annotations

import random

from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend
from optimem.backends.deepseek_ocr2.decoder import bucket
from optimem.modes import Mode

from .conftest import needs_cuda, torch
from .test_deepseek_decoder_cuda import mixed_pages, stored_prompts

pytestmark = needs_cuda


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def test_mixed_workload_compiles_once_per_bucket(tiny_bf16):
    b = DeepseekOcr2Backend.from_model(*tiny_bf16, max_new_tokens=64, ignore_eos=True)
    prompts = stored_prompts(b, mixed_pages(16, seed=80))
    small = [p for p in prompts if p.shape[0] < 200]  # Small pages: 149 positions
    rng = random.Random(0)
    seen: set[int] = set()
    lengths: set[int] = set()
    grew = compiles_on_new_bucket = compiles_elsewhere = 0
    for call in range(300):
        n = rng.choice([1, 1, 2, 3, 5, 7, 9, 12, 16])
        if call % 30 == 29:  # 149 + 1,000 positions: starts at 1,024, grows to 2,048
            batch, new = [rng.choice(small) for _ in range(n)], 1000
        else:
            batch, new = [rng.choice(prompts) for _ in range(n)], rng.randint(4, 64)
        before = compiled_graphs()
        b._generate(batch, max_new_tokens=new)
        built = compiled_graphs() - before
        stats = b.decoder().last_stats
        grew += stats["kv_grew"]
        lengths.add(stats["kv_length"])
        if bucket(n) in seen:
            compiles_elsewhere += built
        else:
            compiles_on_new_bucket += built
            seen.add(bucket(n))
    assert seen == {1, 2, 4, 8, 16}
    assert grew >= 1 and 2048 in lengths  # later long calls may find a 2,048 cache already there
    assert compiles_elsewhere == 0
    assert compiles_on_new_bucket > 0
    print(
        f"{compiles_on_new_bucket} graphs compiled for {len(seen)} batch buckets over 300 calls; "
        f"cache lengths {sorted(lengths)}, {grew} moves to a longer cache"
    )
    assert torch._dynamo.config.recompile_limit >= 4 * len(seen)


def test_growing_cache_keeps_tokens(tiny_fp32):
    """Rows moved to a longer cache mid-call decode exactly as in one cache sized up front."""
    grown = DeepseekOcr2Backend.from_model(*tiny_fp32, max_new_tokens=1000, ignore_eos=True)
    prompts = [p for p in stored_prompts(grown, mixed_pages(6, seed=70)) if p.shape[0] < 200]
    assert prompts
    got = grown._generate(prompts)
    assert grown.decoder().last_stats["kv_grew"] == 1
    eager = DeepseekOcr2Backend.from_model(
        *tiny_fp32, max_new_tokens=1000, ignore_eos=True, decoder_options={"kv": "eager"}
    )
    want = eager._generate(prompts)
    assert [ids for ids, _ in got] == [ids for ids, _ in want]


def test_warm_up_leaves_nothing_to_compile_or_capture(tiny_bf16):
    """After `warm_up((1, 8))` (what a worker does before it reports ready), decoding a page
    and a batch of 8 compiles nothing and captures no CUDA graph: the first recall pays none
    of the one-time costs."""
    b = DeepseekOcr2Backend.from_model(*tiny_bf16, max_new_tokens=64, ignore_eos=True)
    gundam = [p for p in mixed_pages(24, seed=85) if p.mode is Mode.GUNDAM]
    spent = b.warm_up((1, 8))
    assert isinstance(spent, float) and spent > 0
    dec = b.decoder()
    graphs, captured = compiled_graphs(), set(dec._graphs)
    assert b.decode(gundam[0]).extra["tokens"] == 64
    assert [d.extra["tokens"] for d in b.decode_many(gundam[:8])] == [64] * 8
    assert compiled_graphs() == graphs
    assert set(dec._graphs) == captured, f"captured after warm-up: {set(dec._graphs) - captured}"


def test_a_cache_that_replaces_every_graph_still_captures(tiny_bf16):
    """Batch 1, then batch 8 on a fresh backend: the 8-row cache replaces the only (1-row) one
    and every graph captured so far goes with it. The next capture must not reuse the emptied
    graph pool (torch can fail an internal assert if it does); later calls keep decoding."""
    b = DeepseekOcr2Backend.from_model(*tiny_bf16, max_new_tokens=16, ignore_eos=True)
    prompts = stored_prompts(b, mixed_pages(8, seed=95))
    dec = b.decoder()
    assert len(b._generate(prompts[:1])) == 1
    assert set(dec.memory()["caches"]) == {"1x1024"} and dec._graphs
    assert [len(ids) for ids, _ in b._generate(prompts)] == [16] * 8
    assert set(dec.memory()["caches"]) == {"8x1024"}
    assert [len(ids) for ids, _ in b._generate(prompts[:1])] == [16]
