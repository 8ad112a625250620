"""Random DeepSeek-OCR 2 models for tests and benchmarks: configs, tokenizers, builders.

No weights can be downloaded here, so tests and benchmarks build the real architecture from
transformers' config classes with random weights: `tiny_config` (real image geometry, tiny
widths; CPU tests) and `full_size_config` (the checkpoint's sizes, 3.39 B parameters; GPU
timings, which do not depend on weight values). The real tokenizer ships with the weights, so
`word_tokenizer` builds a word-level one with DeepSeek-OCR's special tokens.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

VOCAB = 129280
"""The checkpoint's vocabulary size."""
IMAGE_TOKEN = 128815
"""The checkpoint's <image> token id."""
FULL_SIZE_PARAMS = 3_389_119_360
"""Parameters of `full_size_config()` built on the meta device (3.39 B, as the checkpoint)."""


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


def word_tokenizer(words: Sequence[str], *, unk_token: str, pad_token: str | None = None):
    """A word-level tokenizer over `words` (id = position) with DeepSeek-OCR's special tokens
    ("<s>", "</s>", "<image>"), for random test and benchmark models: the real tokenizer
    ships with the weights, which cannot be downloaded here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=unk_token))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", "isolated"),
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Punctuation(),
        ]
    )
    bos = list(words).index("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    extra = {"pad_token": pad_token} if pad_token is not None else {}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token=unk_token, **extra
    )
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    return fast


def full_size_config(max_position_embeddings: int = 8192):
    """DeepSeek-OCR 2's checkpoint config (deepseek-community/DeepSeek-OCR-2), from its
    published config.json and transformers' conversion script: SAM-base + Qwen2-0.5B encoder
    + DeepSeek 3B MoE decoder (hidden 1280, 12 layers, 64 routed experts, 6 active, 2 shared)."""
    from transformers import DeepseekOcr2Config

    return DeepseekOcr2Config(
        vision_config={
            "sam_config": {
                "hidden_size": 768,
                "num_hidden_layers": 12,
                "num_attention_heads": 12,
                "global_attn_indexes": [2, 5, 8, 11],
                "downsample_channels": [512, 896],
            },
            "encoder_config": {
                "hidden_size": 896,
                "num_hidden_layers": 24,
                "num_attention_heads": 14,
                "num_key_value_heads": 2,
                "intermediate_size": 4864,
                "rms_norm_eps": 1e-6,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
                "vocab_size": 1,
            },
        },
        text_config={
            "vocab_size": VOCAB,
            "hidden_size": 1280,
            "intermediate_size": 6848,
            "num_hidden_layers": 12,
            "num_attention_heads": 10,
            "num_key_value_heads": 10,
            "n_routed_experts": 64,
            "n_shared_experts": 2,
            "num_experts_per_tok": 6,
            "moe_intermediate_size": 896,
            "n_group": 1,
            "topk_group": 1,
            "topk_method": "greedy",
            "mlp_layer_types": ["dense"] + ["sparse"] * 11,
            "max_position_embeddings": max_position_embeddings,
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        image_token_id=IMAGE_TOKEN,
    )


def synthetic_tokenizer(vocab_size: int = VOCAB, image_token_id: int = IMAGE_TOKEN):
    """A word-level tokenizer with the checkpoint's vocabulary size and special-token ids."""
    words = [f"t{i}" for i in range(vocab_size)]
    words[0], words[1], words[image_token_id] = "<s>", "</s>", "<image>"
    for i, w in enumerate(["Free", "OCR", ".", "\n", "<td>", "</td>"]):
        words[1000 + i] = w
    return word_tokenizer(words, unk_token="t2")


def parameter_count(config: Any) -> int:
    """Parameters of the model `config` builds, counted on the meta device (no memory used)."""
    import torch
    from transformers import DeepseekOcr2ForConditionalGeneration

    with torch.device("meta"):
        model = DeepseekOcr2ForConditionalGeneration._from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_random_model(config: Any, *, device: str, dtype: Any, seed: int = 0, attn: str = "sdpa"):
    """(model, processor, parameters, seconds): random weights for `config`, built on `device`,
    with the PIL image processor and the synthetic tokenizer."""
    import torch
    from transformers import DeepseekOcr2ForConditionalGeneration, DeepseekOcr2Processor
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        DeepseekOcr2ImageProcessorPil,
    )

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    with torch.device(device):
        model = DeepseekOcr2ForConditionalGeneration._from_config(
            config, dtype=dtype, attn_implementation=attn
        ).eval()
    tokenizer = synthetic_tokenizer(config.text_config.vocab_size, config.image_token_id)
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=tokenizer)
    n = sum(p.numel() for p in model.parameters())
    return model, processor, n, time.perf_counter() - t0


def random_prompts(model: Any, n: int, length: int, *, seed: int = 0) -> list:
    """`n` prompts of `length` random token ids, embedded: distinct inputs whose rows route to
    varied experts (a check on figures from synthetic pages through random weights)."""
    import torch

    embed = model.get_input_embeddings()
    device = embed.weight.device
    g = torch.Generator(device="cpu").manual_seed(seed)
    vocab = embed.weight.shape[0]
    with torch.inference_mode():
        return [embed(torch.randint(2, vocab, (length,), generator=g).to(device)) for _ in range(n)]


def routing_diversity(model: Any, prompts: Sequence[Any], *, steps: int = 8) -> dict:
    """Distinct routed experts per layer and decode step when `prompts` decode as one batch
    (an eager decoder, which can look at the routing): mean, min and max over the sparse
    layers and `steps` steps, beside the most the batch could use."""
    from .decoder import StaticDecoder

    dec = StaticDecoder(model, cuda_graphs=False, compile=False)
    dec.route_log = []
    dec.generate(list(prompts), max_new_tokens=steps + 1, eos_token_id=None, ngram_size=0)
    seen = dec.route_log
    sparse = next(lay for lay in dec.layers if lay.sparse)
    return {
        "rows": len(prompts),
        "steps": steps,
        "experts": sparse.n_experts,
        "most_possible": min(sparse.n_experts, len(prompts) * sparse.top_k),
        "distinct_mean": sum(seen) / max(len(seen), 1),
        "distinct_min": min(seen, default=0),
        "distinct_max": max(seen, default=0),
    }


__all__ = [
    "FULL_SIZE_PARAMS",
    "IMAGE_TOKEN",
    "VOCAB",
    "build_random_model",
    "full_size_config",
    "parameter_count",
    "random_prompts",
    "routing_diversity",
    "synthetic_tokenizer",
    "tiny_config",
    "word_tokenizer",
]
