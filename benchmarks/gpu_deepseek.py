"""GPU benchmark of the DeepSeek-OCR 2 backend: full-size architecture with RANDOM bf16 weights.

No weights can be downloaded here, so the model is DeepSeek-OCR 2's real architecture
(SAM-base + Qwen2-0.5B vision encoder + DeepSeek 3B MoE decoder, 3.39 B parameters) with
random weights. Timings are real (a forward pass costs the same whatever the weight values);
the decoded text is garbage and EOS is ignored, so every run generates exactly the number of
tokens asked for.

Measures, in one process and on one card:
  * encode (vision tower + projector): pages/s at batch 1 and batched, GPU forward alone
    and with the image preprocessing;
  * decode tokens/s from stored embeddings, 128 new tokens, batch 1 and 8: transformers'
    own generate (eager experts, grouped_mm experts, grouped_mm + static cache compiled) as
    the baseline, then optimem's static decoder (CUDA graphs, Triton expert kernels) at
    batch 1, 8, 32, 64;
  * recall latency of a 1,000-token page, from stored embeddings and from pixels.

    python benchmarks/gpu_deepseek.py [--json OUT.json] [--skip-baseline] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from PIL import Image, ImageDraw

VOCAB = 129280
IMAGE_TOKEN = 128815


def full_size_config(smoke: bool = False):
    """DeepSeek-OCR 2's checkpoint config (deepseek-community/DeepSeek-OCR-2), from its
    published config.json and transformers' conversion script. `smoke` shrinks the widths
    (same code paths, CPU-sized) to check this script itself without a GPU."""
    from transformers import DeepseekOcr2Config

    if smoke:
        from optimem.backends.deepseek_ocr2 import tiny_config

        return tiny_config(
            vocab_size=VOCAB,
            image_token_id=IMAGE_TOKEN,
            bos_token_id=0,
            eos_token_id=1,
            max_position_embeddings=4096,
        )
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
            },
            "encoder_config": {
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "intermediate_size": 128,
                "vocab_size": 1,
            },
        },
        text_config={
            "vocab_size": VOCAB,
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
            "bos_token_id": 0,
            "eos_token_id": 1,
            "max_position_embeddings": 4096,
        },
        image_token_id=IMAGE_TOKEN,
    )
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
            "max_position_embeddings": 8192,
            "bos_token_id": 0,
            "eos_token_id": 1,
        },
        image_token_id=IMAGE_TOKEN,
    )


def synthetic_tokenizer():
    """A WordLevel tokenizer with the checkpoint's vocabulary size and special-token ids."""
    from optimem.backends.deepseek_ocr2 import word_tokenizer

    words = [f"t{i}" for i in range(VOCAB)]
    words[0], words[1], words[IMAGE_TOKEN] = "<s>", "</s>", "<image>"
    for i, w in enumerate(["Free", "OCR", ".", "\n", "<td>", "</td>"]):
        words[1000 + i] = w
    return word_tokenizer(words, unk_token="t2")


def build_model(device: str, smoke: bool):
    from transformers import DeepseekOcr2ForConditionalGeneration, DeepseekOcr2Processor
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        DeepseekOcr2ImageProcessorPil,
    )

    torch.manual_seed(0)
    t0 = time.perf_counter()
    dtype = torch.float32 if smoke else torch.bfloat16
    with torch.device(device):
        model = DeepseekOcr2ForConditionalGeneration._from_config(
            full_size_config(smoke), dtype=dtype, attn_implementation="sdpa"
        ).eval()
    processor = DeepseekOcr2Processor(
        image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=synthetic_tokenizer()
    )
    n = sum(p.numel() for p in model.parameters())
    return model, processor, n, time.perf_counter() - t0


def page(side: int, seed: int) -> Image.Image:
    img = Image.new("RGB", (side, side), "white")
    d = ImageDraw.Draw(img)
    for row in range(side // 14):
        d.text((6, 4 + row * 14), f"line {row} of page {seed}: " + "lorem ipsum dolor " * 8, fill="black")
    return img


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cuda_time(fn, repeat: int = 1) -> float:
    """Mean wall seconds of `fn` over `repeat` calls, the device synchronised around them."""
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    _sync()
    return (time.perf_counter() - t0) / repeat


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:,.3g}" if x < 100 else f"{x:,.0f}"
    return "" if x is None else str(x)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "gpu_deepseek.json"))
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-encode", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny widths on the CPU: checks the script only")
    args = ap.parse_args()
    device = "cpu" if args.smoke else "cuda"

    import transformers

    from optimem.backends import _torch
    from optimem.backends.base import PageInput
    from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend
    from optimem.modes import Mode

    env = {
        "gpu": torch.cuda.get_device_name() if device == "cuda" else "none (smoke test on the CPU)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "triton": getattr(_torch.triton, "__version__", None),
        "flash_attn": _torch.flash_attn_available(),
        "python": platform.python_version(),
    }
    print("environment:", json.dumps(env), flush=True)
    model, processor, n_params, t_build = build_model(device, args.smoke)
    print(
        f"RANDOM bf16 weights, full-size DeepSeek-OCR 2 architecture: {n_params / 1e9:.2f} B params "
        f"(built in {t_build:.1f} s)",
        flush=True,
    )
    results: dict = {"environment": env, "params": n_params, "weights": "random bf16", "rows": []}

    def row(section: str, variant: str, **values):
        entry = {"section": section, "variant": variant, **values}
        results["rows"].append(entry)
        print(json.dumps(entry), flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))

    backend = DeepseekOcr2Backend.from_model(model, processor, ignore_eos=True, max_new_tokens=128)

    # ---- encode -------------------------------------------------------------------------
    for mode in () if args.skip_encode else (Mode.GUNDAM, Mode.BASE):
        pages = [PageInput(page(mode.canvas, i), mode) for i in range(32 if not args.quick else 8)]
        backend.encode_many(pages[:2], batch_size=2)  # warm-up
        for bs in (1, 16):
            n = len(pages) if bs > 1 else 8
            dt = cuda_time(lambda n=n, bs=bs, pages=pages: backend.encode_many(pages[:n], batch_size=bs))
            row(
                "encode",
                f"{mode.value} batch {bs} (with preprocessing)",
                ms_per_page=1000 * dt / n,
                pages_per_s=n / dt,
            )
        # GPU forward alone.
        view = backend.view(mode)
        inputs = processor.image_processor(
            [p.image for p in pages[:16]], return_tensors="pt", **view.processor_kwargs
        )
        pv = inputs["pixel_values"].to(device, model.dtype)
        loc = inputs.get("pixel_values_local")
        loc = None if loc is None else loc.to(device, model.dtype)
        nl = inputs["num_local_patches"]
        with torch.inference_mode():

            def one(pv=pv, loc=loc, nl=nl):
                local = None if loc is None else loc[: int(nl[0])]
                return model.get_image_features(
                    pixel_values=pv[:1], pixel_values_local=local, num_local_patches=nl[:1], return_dict=True
                )

            def many(pv=pv, loc=loc, nl=nl):
                return model.get_image_features(
                    pixel_values=pv, pixel_values_local=loc, num_local_patches=nl, return_dict=True
                )

            one()
            dt1 = cuda_time(one, 5)
            many()
            dt16 = cuda_time(many, 3)
        rows_ = int(one().pooler_output[0].shape[0])
        row(
            "encode",
            f"{mode.value} GPU forward batch 1",
            ms_per_page=1000 * dt1,
            pages_per_s=1 / dt1,
            positions=rows_,
        )
        row(
            "encode",
            f"{mode.value} GPU forward batch 16",
            ms_per_page=1000 * dt16 / 16,
            pages_per_s=16 / dt16,
        )

    # ---- stored embeddings for decode ------------------------------------------------------
    gpage = PageInput(page(1280, 99), Mode.GUNDAM)
    blob = backend.encode(gpage)
    stored = PageInput(gpage.image, gpage.mode, representation=blob)
    feats = backend._stored_features(stored)[0]
    ids = torch.tensor(backend.prompt_ids(feats.shape[0]), device=device)
    with torch.inference_mode():
        prompt = model.get_input_embeddings()(ids)
        prompt[ids == IMAGE_TOKEN] = feats.to(device, prompt.dtype)
    print(f"prompt: {prompt.shape[0]} positions ({feats.shape[0]} image)", flush=True)
    new = 128

    # ---- baseline: transformers' generate ---------------------------------------------------
    def hf_run(batch: int, static: bool) -> float:
        x = prompt[None].expand(batch, -1, -1).contiguous()
        mask = torch.ones(batch, x.shape[1], dtype=torch.long, device=device)
        kw = {"cache_implementation": "static"} if static else {}
        with torch.inference_mode():
            return cuda_time(
                lambda: model.generate(
                    inputs_embeds=x,
                    attention_mask=mask,
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                    pad_token_id=1,
                    eos_token_id=1,
                    **kw,
                )
            )

    if not args.skip_baseline:
        impls = (("eager", False), ("grouped_mm", False), ("grouped_mm", True))
        for impl, static in impls[:1] if args.smoke else impls:
            model.set_experts_implementation(impl)
            label = f"transformers generate, {impl} experts" + (", static cache (compiled)" if static else "")
            for batch in (1, 8):
                try:
                    warm = hf_run(batch, static) if static else None
                    if not static:
                        hf_run(batch, static)
                    dt = hf_run(batch, static)
                    row(
                        "decode",
                        label,
                        batch=batch,
                        tokens_per_s=batch * new / dt,
                        seconds=dt,
                        warmup_s=warm,
                        baseline=True,
                    )
                except Exception as exc:  # keep going: the table says what failed
                    row("decode", label, batch=batch, error=repr(exc)[:300], baseline=True)
        model.set_experts_implementation("eager")
        torch._dynamo.reset()
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    # ---- optimem static decoder ------------------------------------------------------------
    def ours(options: dict, batches=(1, 8, 32, 64), label=None):
        b = DeepseekOcr2Backend.from_model(
            model, processor, ignore_eos=True, max_new_tokens=new, decoder_options=options
        )
        dec = b.decoder()
        for batch in batches:
            try:
                t0 = time.perf_counter()
                b._generate([prompt] * batch, max_new_tokens=new)
                _sync()
                warm = time.perf_counter() - t0
                dt = cuda_time(lambda batch=batch: b._generate([prompt] * batch, max_new_tokens=new))
                st = dec.last_stats
                row(
                    "decode",
                    label or f"optimem static decoder {options}",
                    batch=batch,
                    tokens_per_s=batch * new / dt,
                    decode_only_tokens_per_s=st["decode_tokens_per_s"],
                    prefill_s=st["prefill_s"],
                    seconds=dt,
                    warmup_s=warm,
                )
            except Exception as exc:
                row("decode", label or f"optimem {options}", batch=batch, error=repr(exc)[:500])
        return b

    # Correctness on the GPU: the graph + Triton path against the eager grouped path (bf16).
    ref = DeepseekOcr2Backend.from_model(
        model,
        processor,
        ignore_eos=True,
        max_new_tokens=32,
        decoder_options={"cuda_graphs": False, "moe": "loop" if args.smoke else "grouped"},
    )
    fast = DeepseekOcr2Backend.from_model(model, processor, ignore_eos=True, max_new_tokens=32)
    # Numerics in bf16: prefill logits against transformers' forward, and the Triton expert
    # kernels against a per-expert loop, as relative L2 errors.
    with torch.inference_mode():
        dec = ref.decoder()
        dec._ensure_cache(1, 1024)
        ours_logits = dec._prefill([0], prompt[None])[0]
        hf_logits = model(inputs_embeds=prompt[None]).logits[0, -1].float()
        rel = lambda x, y: float((x.float() - y.float()).norm() / y.float().norm())  # noqa: E731
        lay = dec.layers[1]
        h = torch.randn(4, prompt.shape[1], device=device, dtype=prompt.dtype)
        w, idx = torch.topk(torch.randn(4, lay.n_experts, device=device).softmax(-1), lay.top_k)
        dec.moe = "loop"
        loop = dec._routed(h, lay.gate_up, lay.down, idx, w)
        gemv = (
            _torch.moe_gemv(h, lay.gate_up, lay.down, idx, w) if _torch.moe_gemv_available(device) else loop
        )
        dec.moe = "grouped" if device == "cuda" else "loop"
        grouped = dec._routed(h, lay.gate_up, lay.down, idx, w)
    row(
        "check",
        "bf16 numerics (relative L2 error)",
        prefill_logits_vs_transformers=rel(ours_logits, hf_logits),
        triton_experts_vs_loop=rel(gemv, loop),
        grouped_experts_vs_loop=rel(grouped, loop),
    )
    a = ref._generate([prompt, prompt[:300]])
    b_ = fast._generate([prompt, prompt[:300]])
    hf_ids = ref._hf_generate(prompt, 32, 1, ignore_eos=True)[0]
    agree = lambda x, y: sum(int(i == j) for i, j in zip(x, y, strict=False)) / max(len(x), 1)  # noqa: E731
    row(
        "check",
        "graph+triton vs eager grouped (tokens agreeing, 32 new)",
        agree_full=agree(a[0][0], b_[0][0]),
        agree_short=agree(a[1][0], b_[1][0]),
        agree_hf_vs_eager=agree(hf_ids, a[0][0]),
    )
    del ref, fast

    default = "optimem static decoder (compiled step, CUDA graphs, Triton experts, math attention)"
    b0 = DeepseekOcr2Backend.from_model(model, processor, ignore_eos=True, max_new_tokens=new)
    t0 = time.perf_counter()
    b0.warmup(batch_sizes=(1, 8, 64) if not args.smoke else (1, 8), modes=(Mode.GUNDAM,))
    row(
        "warm-up",
        "compile + capture graphs for batch 1, 8, 64 (once per process)",
        seconds=time.perf_counter() - t0,
    )
    del b0
    ours({}, batches=(1, 8) if args.smoke else (1, 8, 64), label=default)
    if not args.quick and not args.smoke:
        ours({"compile": False}, batches=(1, 64), label="optimem, not compiled (CUDA graphs only)")
        ours({"compile": False, "cuda_graphs": False}, batches=(1,), label="optimem, eager (no graphs)")

    # ---- recall latency of a 1,000-token page ----------------------------------------------------
    rb = DeepseekOcr2Backend.from_model(
        model, processor, ignore_eos=True, max_new_tokens=100 if args.smoke else 1000
    )
    rb.warmup((1,), (Mode.GUNDAM,))
    rb.decode(stored)
    rb.decode(PageInput(gpage.image, gpage.mode))
    dt_stored = cuda_time(lambda: rb.decode(stored))
    dt_pixels = cuda_time(lambda: rb.decode(PageInput(gpage.image, gpage.mode)))
    tokens = rb.decode(stored).extra["tokens"]
    row(
        "recall",
        f"{tokens}-token Gundam page ({prompt.shape[0]} positions) from stored embeddings",
        seconds=dt_stored,
        tokens=tokens,
    )
    row(
        "recall",
        f"{tokens}-token Gundam page from pixels (encode + decode)",
        seconds=dt_pixels,
        tokens=tokens,
    )

    print("\n| section | variant | batch | tokens/s | decode-only tokens/s | ms/page or s | warm-up s |")
    print("|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        speed = r.get("tokens_per_s", r.get("pages_per_s", r.get("error")))
        took = r.get("ms_per_page", r.get("seconds"))
        print(
            f"| {r['section']} | {r['variant']} | {_fmt(r.get('batch'))} | {_fmt(speed)} | "
            f"{_fmt(r.get('decode_only_tokens_per_s'))} | {_fmt(took)} | {_fmt(r.get('warmup_s'))} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
