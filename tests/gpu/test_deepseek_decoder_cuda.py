"""The DeepSeek-OCR 2 decoder's CUDA paths against transformers' generate, tiny and full size.

fp32: the tokens equal transformers' exactly (batches above 8 included, where grouped GEMM
cannot run in fp32). bf16: tokens agree with transformers up to the first step where its
top-2 logits are within bf16 rounding of each other; that step's margin is asserted small.
Batches mix Gundam, Base and Small pages, so prompt lengths differ within one batch.
"""

from __future__ import annotations

import gc

import pytest

from optimem.backends.base import PageInput
from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend, testing

from .conftest import mixed_pages, needs_cuda, torch

pytestmark = needs_cuda

NEW = 32
BF16_MARGIN = 0.03
"""A bf16 divergence is explained when transformers' top-2 logits there differ by at most this
share of the row's largest logit (bf16 keeps 8 bits: ~0.4% per rounding, a few % after 12 layers)."""


def stored_prompts(b: DeepseekOcr2Backend, pages: list[PageInput]) -> list:
    """Prompt embeddings from stored (encoded, packed, unpacked) page embeddings."""
    blobs = b.encode_many(pages)
    prompts = []
    for p, blob in zip(pages, blobs, strict=True):
        feats, problem = b._stored_features(PageInput(p.image, p.mode, representation=blob))
        assert problem is None
        ids = torch.tensor(b.prompt_ids(feats.shape[0]), device="cuda")
        with torch.inference_mode():
            x = b.model.get_input_embeddings()(ids)
            x[ids == b.model.config.image_token_id] = feats.to(x.device, x.dtype)
        prompts.append(x)
    return prompts


def reference(model, prompt, eos: int, new: int = NEW) -> tuple[list[int], list]:
    """transformers' generate (batch 1) from the same embeddings: ids and per-step scores."""
    with torch.inference_mode():
        out = model.generate(
            inputs_embeds=prompt[None],
            attention_mask=torch.ones(1, prompt.shape[0], dtype=torch.long, device="cuda"),
            max_new_tokens=new,
            do_sample=False,
            no_repeat_ngram_size=20,
            eos_token_id=eos,
            pad_token_id=eos,
            output_scores=True,
            return_dict_in_generate=True,
        )
    ids = out.sequences[0].tolist()
    if eos in ids:
        ids = ids[: ids.index(eos)]
    return ids, [s[0].float() for s in out.scores]


def first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def check(pair, prompts, *, exact: bool, **options) -> dict:
    model, processor = pair
    b = DeepseekOcr2Backend.from_model(model, processor, max_new_tokens=NEW, **options)
    eos = b.tokenizer.eos_token_id
    got = [ids for ids, _ in b._generate(prompts)]
    report = {"rows": len(prompts), "lengths": sorted({int(p.shape[0]) for p in prompts}), "margins": []}
    for row, prompt in enumerate(prompts):
        ref, scores = reference(model, prompt, eos)
        at = first_difference(got[row], ref)
        if at is None:
            continue
        assert not exact, f"row {row}: tokens differ from transformers at step {at}: {got[row]} vs {ref}"
        assert at < len(scores), f"row {row}: lengths differ without a differing token"
        step = scores[at][scores[at].isfinite()]  # the guard bans tokens with -inf
        top2 = step.topk(2).values
        margin = float((top2[0] - top2[1]) / step.abs().max())
        report["margins"].append((row, at, margin))
        assert margin <= BF16_MARGIN, f"row {row} differs at step {at} where the top-2 margin is {margin:.4f}"
    print(report)
    return report


def test_tiny_fp32_equals_transformers_mixed_lengths_above_batch_8(tiny_fp32):
    b = DeepseekOcr2Backend.from_model(*tiny_fp32)
    prompts = stored_prompts(b, mixed_pages(12))
    assert b.decoder().moe == "gemv"  # fp32: Triton experts at every batch size
    check(tiny_fp32, prompts, exact=True)
    check(tiny_fp32, prompts[:3], exact=True)  # batch bucket 4, another graph


def test_tiny_fp32_grouped_gemm_refused_with_reason(tiny_fp32):
    b = DeepseekOcr2Backend.from_model(*tiny_fp32, decoder_options={"moe": "grouped"})
    with pytest.raises(Exception, match="bf16-only"):
        b.decoder()


def test_tiny_bf16_agrees_up_to_ties(tiny_bf16):
    b = DeepseekOcr2Backend.from_model(*tiny_bf16)
    prompts = stored_prompts(b, mixed_pages(12, seed=40))
    check(tiny_bf16, prompts, exact=False)


@pytest.mark.parametrize("options", [{"compile": "step"}, {"attention": "math"}, {"compile": False}])
def test_tiny_fp32_variants_equal_transformers(tiny_fp32, options):
    b = DeepseekOcr2Backend.from_model(*tiny_fp32)
    prompts = stored_prompts(b, mixed_pages(5, seed=20))
    check(tiny_fp32, prompts, exact=True, decoder_options=options)


@pytest.fixture(scope="module", params=["bfloat16", "float32"])
def full_size(request):
    dtype = getattr(torch, request.param)
    model, processor, n, _ = testing.build_random_model(
        testing.full_size_config(), device="cuda", dtype=dtype
    )
    assert n == testing.FULL_SIZE_PARAMS
    yield model, processor
    del model, processor
    gc.collect()
    torch.cuda.empty_cache()


def test_full_size_against_transformers(full_size):
    model, processor = full_size
    fp32 = model.dtype == torch.float32
    b = DeepseekOcr2Backend.from_model(model, processor, max_batch=16)
    prompts = stored_prompts(b, mixed_pages(12, seed=60))  # above 48 token-expert rows: grouped GEMM in bf16
    report = check(full_size, prompts, exact=fp32, max_batch=16)  # cache for 16 rows, not 64
    assert report["lengths"] == [149, 261, 837]
