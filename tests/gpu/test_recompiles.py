"""A long mixed workload compiles a bounded number of times: once per batch bucket.

Many recalls of random batch sizes, page mixes and token counts through one backend (as a
service decodes for weeks): torch.compile may build graphs only on a call that brings a batch
bucket not seen before, never for a new page length, token count or cache length.
"""

from __future__ import annotations

import random

from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend
from optimem.backends.deepseek_ocr2.decoder import bucket

from .conftest import needs_cuda, torch
from .test_deepseek_decoder_cuda import mixed_pages, stored_prompts

pytestmark = needs_cuda


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def test_mixed_workload_compiles_once_per_bucket(tiny_bf16):
    b = DeepseekOcr2Backend.from_model(*tiny_bf16, max_new_tokens=64)
    prompts = stored_prompts(b, mixed_pages(16, seed=80))
    rng = random.Random(0)
    seen: set[int] = set()
    compiles_on_new_bucket = compiles_elsewhere = 0
    for _ in range(150):
        n = rng.choice([1, 1, 2, 3, 5, 7, 9, 12, 16])
        before = compiled_graphs()
        b._generate([rng.choice(prompts) for _ in range(n)], max_new_tokens=rng.randint(4, 64))
        built = compiled_graphs() - before
        if bucket(n) in seen:
            compiles_elsewhere += built
        else:
            compiles_on_new_bucket += built
            seen.add(bucket(n))
    assert seen == {1, 2, 4, 8, 16}
    assert compiles_elsewhere == 0
    assert compiles_on_new_bucket > 0
    print(f"{compiles_on_new_bucket} graphs compiled for {len(seen)} buckets over 150 calls")
    assert torch._dynamo.config.recompile_limit >= 4 * len(seen)
