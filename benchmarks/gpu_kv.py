"""GPU memory and varied-input speed of the DeepSeek-OCR 2 decoder (issue 21), RANDOM bf16 weights.

One process, one card, the full-size architecture (3.39 B parameters, random weights: timings
and memory are real, the text is garbage, EOS is ignored). Side by side:

  * KV layout "eager" (the earlier one: one cache at 64 rows × the full context, taken on the
    first call) against "demand" (a cache per batch and length bucket, on first use): peak GPU
    memory (`torch.cuda.max_memory_allocated`, weights included) after batch 1, 8 and 64, and
    tokens/s end to end (prefill included) and decode-only at each batch, 128 new tokens, on
    DISTINCT PAGES (Gundam/Base/Small mixed; batch 1 one Gundam page) and on DISTINCT RANDOM
    PROMPTS (random token ids, 837 positions each: a Gundam page's length);
  * expert-routing diversity per batch (distinct routed experts per layer and decode step);
  * a 1,000-token recall (837 + 1,000 positions: a 2,048-position cache under "demand");
  * the budget: `max_gpu_memory=10 GiB` decodes batch 1 and 8 and refuses batch 64 with
    `BackendMemoryError`;
  * variants (attention splits, prefill chunk) and, with --profile, a kernel profile of one
    batch-64 call of random prompts.

    python benchmarks/gpu_kv.py [--json OUT.json] [--repeat 3] [--no-variants]
    python benchmarks/gpu_kv.py --smoke        # CPU check of the script (tiny widths)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.gpu_deepseek import compiled_graphs, model_config, page

NEW = 128
GIB = 2**30


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _peak() -> float | None:
    return torch.cuda.max_memory_allocated() / GIB if torch.cuda.is_available() else None


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "gpu_kv.json"))
    ap.add_argument("--repeat", type=int, default=3, help="timed calls per row (median)")
    ap.add_argument("--no-variants", action="store_true")
    ap.add_argument("--profile", action="store_true", help="profile one batch-64 call of random prompts")
    ap.add_argument("--smoke", action="store_true", help="tiny widths on the CPU: checks the script only")
    args = ap.parse_args()
    device = "cpu" if args.smoke else "cuda"

    from optimem.backends.base import PageInput
    from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend, testing
    from optimem.errors import BackendMemoryError
    from optimem.modes import Mode

    dtype = torch.float32 if args.smoke else torch.bfloat16
    model, processor, n_params, _ = testing.build_random_model(
        model_config(args.smoke), device=device, dtype=dtype
    )
    if not args.smoke and n_params != testing.FULL_SIZE_PARAMS:
        raise SystemExit(f"refusing to time a {n_params:,}-parameter model as the full-size one")
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke)"
    weights = torch.cuda.memory_allocated() / GIB if device == "cuda" else None
    print(f"{n_params:,} parameters, random {dtype}, {card}; weights on the card: {weights} GiB", flush=True)
    results: dict = {
        "card": card,
        "torch": torch.__version__,
        "params": n_params,
        "weights_gib": weights,
        "rows": [],
    }

    def row(section: str, **values) -> None:
        entry = {"section": section, **values}
        results["rows"].append(entry)
        print(json.dumps(entry), flush=True)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2))

    # ---- inputs: distinct pages (stored embeddings) and distinct random prompts ----------------
    n_max = 8 if args.smoke else 64
    modes = (Mode.GUNDAM, Mode.BASE, Mode.SMALL)
    enc = DeepseekOcr2Backend.from_model(model, processor)
    pages = [PageInput(page(modes[i % 3].canvas, 100 + i), modes[i % 3]) for i in range(n_max)]
    gundam = PageInput(page(1280, 500), Mode.GUNDAM)
    blobs = enc.encode_many([*pages, gundam], batch_size=16)

    def prompt_of(p: PageInput, blob: bytes):
        feats = enc._stored_features(PageInput(p.image, p.mode, representation=blob))[0]
        ids = torch.tensor(enc.prompt_ids(feats.shape[0]), device=device)
        with torch.inference_mode():
            x = model.get_input_embeddings()(ids)
            x[ids == model.config.image_token_id] = feats.to(device, x.dtype)
        return x

    mixed = [prompt_of(p, b) for p, b in zip(pages, blobs, strict=False)]
    single = prompt_of(gundam, blobs[-1])
    stored_gundam = PageInput(gundam.image, gundam.mode, representation=blobs[-1])
    random_ = testing.random_prompts(model, n_max, int(single.shape[0]), seed=1)
    _free()
    batches = (1, 8) if args.smoke else (1, 8, 64)
    inputs = {
        "distinct pages": lambda n: [single] if n == 1 else mixed[:n],
        "distinct random prompts": lambda n: random_[:n],
    }

    # ---- routing diversity -------------------------------------------------------------------
    for label, make in (*inputs.items(), ("same page repeated", lambda n: [single] * n)):
        for n in batches[1:]:
            div = testing.routing_diversity(model, make(n), steps=8)
            row("routing", input=label, batch=n, **div)
    _free()

    def timed(b, prompts, repeat: int) -> tuple[float, dict]:
        b._generate(prompts, max_new_tokens=NEW)
        times, stats = [], []
        for _ in range(repeat):
            _sync()
            t0 = time.perf_counter()
            b._generate(prompts, max_new_tokens=NEW)
            _sync()
            times.append(time.perf_counter() - t0)
            stats.append(b.decoder().last_stats)
        mid = statistics.median(times)
        return mid, stats[times.index(mid)]

    # ---- eager (before) vs demand (after), side by side ------------------------------------------
    for kv in ("eager", "demand"):
        _free()
        _reset_peak()
        graphs0 = compiled_graphs()
        b = DeepseekOcr2Backend.from_model(
            model, processor, ignore_eos=True, max_new_tokens=NEW, decoder_options={"kv": kv}
        )
        for n in batches:
            t0 = time.perf_counter()
            b.warm_up(batch_sizes=(n,), modes=(Mode.GUNDAM,))
            warm = time.perf_counter() - t0
            for label, make in inputs.items():
                dt, st = timed(b, make(n), args.repeat)
                row("decode", kv=kv, input=label, batch=n, tokens_per_s=n * NEW / dt,
                    decode_only_tokens_per_s=st["decode_tokens_per_s"], seconds=dt, prefill_s=st["prefill_s"],
                    kv_length=st["kv_length"], warmup_s=warm, peak_gib_so_far=_peak())  # fmt: skip
        mem = b.decoder().memory()
        row("memory", kv=kv, peak_gib=_peak(), caches={k: v / GIB for k, v in mem["caches"].items()},
            cache_total_gib=mem["cache_total"] / GIB, weights_gib_counted=mem["weights"] / GIB,
            kv_bytes_per_position_per_row=mem["kv_bytes_per_position_per_row"],
            compiled_graphs=compiled_graphs() - graphs0)  # fmt: skip
        b._decoder = None
        del b
        _free()
        # A 1,000-token recall from stored embeddings (demand: a 2,048-position cache).
        long_new = 100 if args.smoke else 1000
        rb = DeepseekOcr2Backend.from_model(
            model, processor, ignore_eos=True, max_new_tokens=long_new, decoder_options={"kv": kv}
        )
        rb.warm_up((1,), (Mode.GUNDAM,))
        rb.decode(stored_gundam)
        _sync()
        t0 = time.perf_counter()
        out = rb.decode(stored_gundam)
        _sync()
        dt = time.perf_counter() - t0
        st = rb.decoder().last_stats
        row("recall", kv=kv, tokens=out.extra["tokens"], seconds=dt, tokens_per_s=out.extra["tokens"] / dt,
            kv_length=st["kv_length"], kv_grew=st["kv_grew"])  # fmt: skip
        rb._decoder = None
        del rb

    # ---- the budget --------------------------------------------------------------------------
    _free()
    _reset_peak()
    budget = 10 * GIB if not args.smoke else None
    bb = DeepseekOcr2Backend.from_model(
        model, processor, ignore_eos=True, max_new_tokens=NEW, max_gpu_memory=budget
    )
    for n in batches:
        try:
            dt, st = timed(bb, inputs["distinct pages"](n), 1)
            row("budget", budget_gib=budget and budget / GIB, batch=n, ok=True, tokens_per_s=n * NEW / dt,
                peak_gib=_peak())  # fmt: skip
        except BackendMemoryError as exc:
            row(
                "budget",
                budget_gib=budget and budget / GIB,
                batch=n,
                ok=False,
                error=str(exc),
                peak_gib=_peak(),
            )
    bb._decoder = None
    del bb

    # ---- variants at batch 64 ------------------------------------------------------------------
    variants = [
        ({"attn_programs": 2048}, "attention split to 2,048 programs", batches),
        (
            {"attn_programs": 2048, "prefill_batch": 64},
            "attention 2,048 programs + prefill 64 per forward",
            (64,),
        ),
        ({"prefill_batch": 64}, "prefill 64 prompts per forward", (64,)),
    ]
    for options, label, sizes in [] if args.no_variants or args.smoke else variants:
        _free()
        _reset_peak()
        vb = DeepseekOcr2Backend.from_model(
            model, processor, ignore_eos=True, max_new_tokens=NEW, decoder_options=options
        )
        for n in sizes:
            vb.warm_up((n,), (Mode.GUNDAM,))
            for ilabel, make in inputs.items():
                dt, st = timed(vb, make(n), args.repeat)
                row("variant", variant=label, options=options, input=ilabel, batch=n, tokens_per_s=n * NEW / dt,
                    decode_only_tokens_per_s=st["decode_tokens_per_s"], seconds=dt, prefill_s=st["prefill_s"],
                    peak_gib_so_far=_peak())  # fmt: skip
        vb._decoder = None
        del vb

    if args.profile and not args.smoke:  # where a batch-64 step of random prompts spends its time
        _free()
        pb = DeepseekOcr2Backend.from_model(model, processor, ignore_eos=True, max_new_tokens=NEW)
        pb.warm_up((64,), (Mode.GUNDAM,))
        pb._generate(random_[:64], max_new_tokens=NEW)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            pb._generate(random_[:64], max_new_tokens=NEW)
            _sync()
        table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=40, max_name_column_width=90)
        Path(args.json).with_suffix(".profile.txt").write_text(table)
        print(table[:6000])
        pb._decoder = None
        del pb

    row("compile", compiled_graphs=compiled_graphs())
    print(f"\ncard: {card}; weights {weights} GiB")
    print("| kv | input | batch | tokens/s | decode-only | peak GiB so far |")
    print("|---|---|---|---|---|---|")
    for r in results["rows"]:
        if r["section"] == "decode":
            print(f"| {r['kv']} | {r['input']} | {r['batch']} | {r['tokens_per_s']:,.0f} | "
                  f"{r['decode_only_tokens_per_s']:,.0f} | {r['peak_gib_so_far']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
