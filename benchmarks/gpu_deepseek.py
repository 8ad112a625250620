"""GPU benchmark of the DeepSeek-OCR 2 backend: full-size architecture with RANDOM bf16 weights.

No weights can be downloaded here, so the model is DeepSeek-OCR 2's real architecture
(SAM-base + Qwen2-0.5B vision encoder + DeepSeek 3B MoE decoder, 3.39 B parameters) with
random weights. Timings are real (a forward pass costs the same whatever the weight values);
the decoded text is garbage and EOS is ignored, so every run generates exactly the number of
tokens asked for. Every run prints the parameter count it built, and refuses to time a model
that is not the full size unless `--smoke` says so.

Measures, in one process and on one card:
  * encode (vision tower + projector): pages/s at batch 1 and batched;
  * decode tokens/s from stored embeddings, 128 new tokens, on batches of DISTINCT pages
    (different images; Gundam, Base and Small pages mixed, so prompt lengths differ):
    transformers' own generate (eager experts, grouped_mm experts, grouped_mm + static cache
    compiled) as the baseline on distinct Gundam pages, then optimem's static decoder in
    each variant tried; rows labelled "same page repeated" batch one prompt (it routes every
    row to the same experts, so it flatters large batches);
  * the same on batches of distinct RANDOM prompts (random token ids, a Gundam prompt's length),
    and expert-routing diversity per batch (distinct routed experts per layer and step): the
    lower of pages and random prompts is the batched figure to quote;
  * recall latency of a 1,000-token page, from stored embeddings and from pixels;
  * how many graphs torch.compile built in the whole run.

    python benchmarks/gpu_deepseek.py [--json OUT.json] [--skip-baseline] [--skip-encode] [--quick]
    python benchmarks/gpu_deepseek.py --smoke --quick --skip-baseline   # CPU check of the script
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

from optimem.backends.deepseek_ocr2 import testing

NEW = 128
MIXED = ("gundam", "base", "small")


def model_config(smoke: bool = False):
    """The config a run builds: the checkpoint's sizes, or tiny widths with `smoke` (same code
    paths, CPU-sized, to check this script without a GPU)."""
    if smoke:
        return testing.tiny_config(
            vocab_size=testing.VOCAB,
            image_token_id=testing.IMAGE_TOKEN,
            bos_token_id=0,
            eos_token_id=1,
            max_position_embeddings=4096,
        )
    return testing.full_size_config()


def page(side: int, seed: int) -> Image.Image:
    """A text page whose lines differ with `seed` (distinct pages give distinct embeddings)."""
    img = Image.new("RGB", (side, side), "white")
    d = ImageDraw.Draw(img)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "optical", "memory", "page", "recall", "turn"]
    for row in range(side // 14):
        line = " ".join(words[(seed * 7 + row * 3 + i * (seed % 5 + 1)) % len(words)] for i in range(24))
        d.text((6, 4 + row * 14), f"{seed}.{row} {line}", fill="black")
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


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _fmt(x) -> str:
    if isinstance(x, float):
        return f"{x:,.3g}" if x < 100 else f"{x:,.0f}"
    return "" if x is None else str(x)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "gpu_deepseek.json"))
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--quick", action="store_true", help="fewer pages and variants")
    ap.add_argument("--skip-encode", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny widths on the CPU: checks the script only")
    args = ap.parse_args()
    device = "cpu" if args.smoke else "cuda"

    import transformers

    from optimem.backends.base import PageInput
    from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend, kernels
    from optimem.modes import Mode

    env = {
        "gpu": torch.cuda.get_device_name() if device == "cuda" else "none (smoke test on the CPU)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "triton": getattr(kernels.triton, "__version__", None),
        "python": platform.python_version(),
    }
    print("environment:", json.dumps(env), flush=True)
    dtype = torch.float32 if args.smoke else torch.bfloat16
    model, processor, n_params, t_build = testing.build_random_model(
        model_config(args.smoke), device=device, dtype=dtype
    )
    size = "tiny smoke-test widths" if args.smoke else "full-size DeepSeek-OCR 2 architecture"
    print(
        f"measured parameters: {n_params:,} ({n_params / 1e9:.2f} B), RANDOM {str(dtype)[6:]} weights, "
        f"{size} (built in {t_build:.1f} s)",
        flush=True,
    )
    if not args.smoke and n_params != testing.FULL_SIZE_PARAMS:
        raise SystemExit(f"refusing to time a {n_params:,}-parameter model as the full-size one")
    results: dict = {"environment": env, "params": n_params, "weights": f"random {dtype}", "rows": []}

    def row(section: str, variant: str, **values):
        entry = {"section": section, "variant": variant, **values}
        results["rows"].append(entry)
        print(json.dumps(entry), flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))

    backend = DeepseekOcr2Backend.from_model(model, processor, ignore_eos=True, max_new_tokens=NEW)

    # ---- encode -------------------------------------------------------------------------
    for mode in () if args.skip_encode else (Mode.GUNDAM, Mode.BASE):
        pages = [PageInput(page(mode.canvas, i), mode) for i in range(32 if not args.quick else 8)]
        backend.encode_many(pages[:2], batch_size=2)  # warm-up
        for bs in (1, 16):
            n = len(pages) if bs > 1 else 8
            dt = cuda_time(lambda n=n, bs=bs, pages=pages: backend.encode_many(pages[:n], batch_size=bs))
            row("encode", f"{mode.value} batch {bs} (with preprocessing)", ms_per_page=1000 * dt / n,
                pages_per_s=n / dt)  # fmt: skip

    # ---- distinct pages: stored embeddings → prompts ------------------------------------------
    n_pages = 8 if args.smoke else 64
    mixed = [
        PageInput(page(Mode.parse(MIXED[i % 3]).canvas, 100 + i), Mode.parse(MIXED[i % 3]))
        for i in range(n_pages)
    ]
    gundams = [PageInput(page(1280, 500 + i), Mode.GUNDAM) for i in range(8)]
    t0 = time.perf_counter()
    blobs = backend.encode_many(mixed + gundams, batch_size=16)
    print(f"encoded {len(blobs)} distinct pages in {time.perf_counter() - t0:.1f} s", flush=True)
    stored = [
        PageInput(p.image, p.mode, representation=b) for p, b in zip(mixed + gundams, blobs, strict=True)
    ]

    def prompt_of(p):
        feats = backend._stored_features(p)[0]
        ids = torch.tensor(backend.prompt_ids(feats.shape[0]), device=device)
        with torch.inference_mode():
            x = model.get_input_embeddings()(ids)
            x[ids == model.config.image_token_id] = feats.to(device, x.dtype)
        return x

    prompts_mixed = [prompt_of(p) for p in stored[:n_pages]]
    prompts_gundam = [prompt_of(p) for p in stored[n_pages:]]
    prompt = prompts_gundam[0]
    lengths = sorted({int(p.shape[0]) for p in prompts_mixed})
    print(
        f"prompt lengths in the mixed batches: {lengths}; Gundam prompt {prompt.shape[0]} positions",
        flush=True,
    )

    # Distinct random token ids of a Gundam prompt's length: rows that route to varied experts
    # (synthetic pages through random weights share most of theirs; see the routing rows).
    prompts_random = testing.random_prompts(model, n_pages, int(prompt.shape[0]), seed=1)
    for label, make in (
        ("distinct pages", lambda n: prompts_mixed[:n]),
        ("distinct random prompts", lambda n: prompts_random[:n]),
        ("same page repeated", lambda n: [prompt] * n),
    ):
        for n in sorted({8, n_pages}):
            row("routing", f"{label}: distinct routed experts per layer and decode step", batch=n,
                **testing.routing_diversity(model, make(n), steps=8))  # fmt: skip

    def batch_of(batch: int) -> list:
        """`batch` distinct pages: a Gundam page alone at batch 1, else Gundam/Base/Small mixed."""
        return [prompt] if batch == 1 else prompts_mixed[:batch]

    # ---- baseline: transformers' generate, distinct Gundam pages -----------------------------
    def hf_run(batch: int, static: bool) -> float:
        x = torch.stack(prompts_gundam[:batch])
        mask = torch.ones(batch, x.shape[1], dtype=torch.long, device=device)
        kw = {"cache_implementation": "static"} if static else {}
        with torch.inference_mode():
            return cuda_time(
                lambda: model.generate(
                    inputs_embeds=x,
                    attention_mask=mask,
                    max_new_tokens=NEW,
                    min_new_tokens=NEW,
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
                    warm = hf_run(batch, static)
                    dt = hf_run(batch, static)
                    row("decode", label + ", distinct Gundam pages", batch=batch,
                        tokens_per_s=batch * NEW / dt, seconds=dt, warmup_s=warm if static else None,
                        baseline=True)  # fmt: skip
                except Exception as exc:  # keep going: the table says what failed
                    row("decode", label, batch=batch, error=repr(exc)[:300], baseline=True)
        model.set_experts_implementation("eager")
        torch._dynamo.reset()
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    # ---- correctness on the GPU: fast path against the eager grouped path (bf16) ---------------
    ref = DeepseekOcr2Backend.from_model(
        model, processor, ignore_eos=True, max_new_tokens=32,
        decoder_options={"cuda_graphs": False, "compile": False, "attention": "math",
                         "moe": "loop" if args.smoke else "grouped"},
    )  # fmt: skip
    fast = DeepseekOcr2Backend.from_model(model, processor, ignore_eos=True, max_new_tokens=32)
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
        gemv = kernels.moe_gemv(h, lay.gate_up, lay.down, idx, w) if kernels.available(device) else loop
        dec.moe = "grouped" if device == "cuda" else "loop"
        grouped = dec._routed(h, lay.gate_up, lay.down, idx, w)
    row("check", "bf16 numerics (relative L2 error)", prefill_logits_vs_transformers=rel(ours_logits, hf_logits),
        triton_experts_vs_loop=rel(gemv, loop), grouped_experts_vs_loop=rel(grouped, loop))  # fmt: skip
    trio = [prompt, prompts_mixed[1], prompts_mixed[2]]
    a = ref._generate(trio)
    b_ = fast._generate(trio)
    agree = lambda x, y: sum(int(i == j) for i, j in zip(x, y, strict=False)) / max(len(x), 1)  # noqa: E731
    row("check", "compiled graphs + Triton vs eager grouped, 32 new tokens, 3 lengths in one batch",
        agree=[agree(x[0], y[0]) for x, y in zip(a, b_, strict=True)],
        lengths=[int(p.shape[0]) for p in trio])  # fmt: skip
    del ref, fast, dec
    gc.collect()

    # ---- optimem static decoder variants -------------------------------------------------------
    def ours(options: dict, label: str, batches=(1, 8, 64), repeated=(8, 64)):
        b = DeepseekOcr2Backend.from_model(model, processor, ignore_eos=True, max_new_tokens=NEW,
                                           decoder_options=options)  # fmt: skip
        dec = b.decoder()
        graphs0 = compiled_graphs()
        t0 = time.perf_counter()
        b.warm_up(batch_sizes=batches, modes=(Mode.GUNDAM,))
        row("warm-up", label, seconds=time.perf_counter() - t0, batches=list(batches),
            compiled_graphs=compiled_graphs() - graphs0)  # fmt: skip
        runs = [(n, batch_of(n), "distinct pages") for n in batches]
        runs += [(n, prompts_random[:n], "distinct random prompts") for n in batches if n > 1]
        runs += [(n, [prompt] * n, "same page repeated") for n in repeated if not args.quick]
        for batch, prompts, kind in runs:
            try:
                b._generate(prompts, max_new_tokens=NEW)
                dt = cuda_time(lambda prompts=prompts: b._generate(prompts, max_new_tokens=NEW))
                st = dec.last_stats
                row("decode", f"{label}, {kind}", batch=batch, tokens_per_s=batch * NEW / dt,
                    decode_only_tokens_per_s=st["decode_tokens_per_s"], prefill_s=st["prefill_s"],
                    seconds=dt)  # fmt: skip
            except Exception as exc:
                row("decode", f"{label}, {kind}", batch=batch, error=repr(exc)[:500])
        b._decoder = dec = None  # free the cache before the next variant
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()

    smoke_batches = {"batches": (1, 8), "repeated": ()} if args.smoke else {}
    variants = [
        ({}, "optimem default (compiled pieces, CUDA graph per batch bucket, Triton experts + attention)"),
        ({"compile": "step"}, "optimem, whole step compiled (Triton attention)"),
        ({"attention": "math"}, "optimem, compiled pieces + eager math attention (graph per 256 positions)"),
    ]
    if not args.quick:
        variants += [
            ({"compile": False}, "optimem, not compiled (CUDA graphs + Triton only)"),
            ({"compile": False, "cuda_graphs": False}, "optimem, eager (no graphs, no compile)"),
        ]
    for options, label in variants[:1] if args.smoke else variants:
        extra = {"batches": (1,), "repeated": ()} if options.get("cuda_graphs") is False else smoke_batches
        ours(options, label, **extra)

    # ---- recall latency of a 1,000-token page ------------------------------------------------
    for options, label in (
        (({}, "default"),) if args.smoke else (({}, "default"), ({"compile": "step"}, "whole step"))
    ):
        rb = DeepseekOcr2Backend.from_model(model, processor, ignore_eos=True,
                                            max_new_tokens=100 if args.smoke else 1000,
                                            decoder_options=options)  # fmt: skip
        rb.warm_up((1,), (Mode.GUNDAM,))
        gpage = gundams[0]
        rb.decode(stored[n_pages])
        rb.decode(gpage)
        dt_stored = cuda_time(lambda rb=rb: rb.decode(stored[n_pages]), 3)
        dt_pixels = cuda_time(lambda rb=rb, g=gpage: rb.decode(g), 2)
        tokens = rb.decode(stored[n_pages]).extra["tokens"]
        row("recall", f"{label}: {tokens}-token Gundam page ({prompt.shape[0]} positions) from stored embeddings",
            seconds=dt_stored, tokens=tokens, tokens_per_s=tokens / dt_stored)  # fmt: skip
        row("recall", f"{label}: {tokens}-token Gundam page from pixels (encode + decode)", seconds=dt_pixels,
            tokens=tokens, tokens_per_s=tokens / dt_pixels)  # fmt: skip
        del rb
        gc.collect()

    row("compile", "graphs torch.compile built in this process", compiled_graphs=compiled_graphs())
    print(
        f"\nmodel: {n_params:,} parameters ({n_params / 1e9:.2f} B), random {str(dtype)[6:]}; card: {env['gpu']}"
    )
    print("| section | variant | batch | tokens/s | decode-only tokens/s | ms/page or s | warm-up s |")
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
