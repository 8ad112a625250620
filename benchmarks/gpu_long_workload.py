"""A long mixed decode workload on the full-size DeepSeek-OCR 2 (RANDOM bf16 weights), as a
service runs it: does torch.compile stay bounded, and does speed hold?

Hundreds of recalls through one backend, each of a random number of distinct pages (1-64;
Gundam, Base and Small mixed, so prompt lengths differ) and a random token count (16-256,
EOS ignored). Reports how many graphs torch.compile built, on which calls, and tokens/s per
batch bucket in the first and the second half of the run. Run it with
`TORCH_LOGS=recompiles` to see every recompilation torch reports.

    TORCH_LOGS=recompiles python benchmarks/gpu_long_workload.py [--recalls 300] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from benchmarks.gpu_deepseek import compiled_graphs, model_config, page


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recalls", type=int, default=300)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--json", default=os.path.join(os.environ.get("OUT", "."), "gpu_long_workload.json"))
    ap.add_argument("--smoke", action="store_true", help="tiny widths on the CPU: checks the script only")
    ap.add_argument("--options", default="{}", help="decoder options as JSON")
    args = ap.parse_args()
    device = "cpu" if args.smoke else "cuda"

    from optimem.backends.base import PageInput
    from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend, testing
    from optimem.backends.deepseek_ocr2.decoder import bucket
    from optimem.modes import Mode

    dtype = torch.float32 if args.smoke else torch.bfloat16
    model, processor, n_params, _ = testing.build_random_model(
        model_config(args.smoke), device=device, dtype=dtype
    )
    card = torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke)"
    print(f"measured parameters: {n_params:,} ({n_params / 1e9:.2f} B), random {dtype}, {card}", flush=True)
    options = json.loads(args.options)
    b = DeepseekOcr2Backend.from_model(
        model, processor, ignore_eos=True, max_batch=args.max_batch, decoder_options=options
    )
    modes = (Mode.GUNDAM, Mode.BASE, Mode.SMALL)
    pages = [PageInput(page(modes[i % 3].canvas, 300 + i), modes[i % 3]) for i in range(args.max_batch)]
    stored = [
        PageInput(p.image, p.mode, representation=x) for p, x in zip(pages, b.encode_many(pages), strict=True)
    ]
    prompts = []
    for p in stored:
        feats = b._stored_features(p)[0]
        ids = torch.tensor(b.prompt_ids(feats.shape[0]), device=device)
        with torch.inference_mode():
            x = model.get_input_embeddings()(ids)
            x[ids == model.config.image_token_id] = feats.to(x.device, x.dtype)
        prompts.append(x)

    rng = random.Random(0)
    calls = []
    start_graphs = compiled_graphs()
    t_start = time.perf_counter()
    for i in range(args.recalls):
        n = min(args.max_batch, int(2 ** rng.uniform(0, 6.01)))  # 1-64, as many small as large
        new = rng.randint(16, 256)
        chosen = rng.sample(prompts, n)
        before = compiled_graphs()
        t0 = time.perf_counter()
        b._generate(chosen, max_new_tokens=new)
        dt = time.perf_counter() - t0
        built = compiled_graphs() - before
        calls.append({"call": i, "rows": n, "bucket": bucket(n), "new": new, "seconds": dt,
                      "tokens_per_s": n * new / dt, "compiled": built,
                      "kv_length": b.decoder().last_stats.get("kv_length")})  # fmt: skip
        if built:
            print(
                f"call {i}: {n} rows (bucket {bucket(n)}), {new} tokens: compiled {built} graphs, {dt:.1f} s",
                flush=True,
            )
    wall = time.perf_counter() - t_start
    half = len(calls) // 2
    per_bucket = {}
    for bk in sorted({c["bucket"] for c in calls}):
        first = [c["tokens_per_s"] for c in calls[:half] if c["bucket"] == bk and not c["compiled"]]
        second = [c["tokens_per_s"] for c in calls[half:] if c["bucket"] == bk and not c["compiled"]]
        per_bucket[bk] = {
            "calls": sum(c["bucket"] == bk for c in calls),
            "first_half_median_tokens_per_s": statistics.median(first) if first else None,
            "second_half_median_tokens_per_s": statistics.median(second) if second else None,
        }
    summary = {
        "card": card,
        "params": n_params,
        "options": options,
        "recalls": len(calls),
        "wall_s": wall,
        "compiled_graphs": compiled_graphs() - start_graphs,
        "calls_that_compiled": sum(bool(c["compiled"]) for c in calls),
        "buckets_seen": len(per_bucket),
        "compiled_on_calls": [c["call"] for c in calls if c["compiled"]],
        "per_bucket": per_bucket,
        "recompile_limit": getattr(torch._dynamo.config, "recompile_limit", None),
        "cache_lengths": sorted({c["kv_length"] for c in calls if c["kv_length"]}),
        "caches_held": b.decoder().memory()["caches"],
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"summary": summary, "calls": calls}, indent=2))
    print(json.dumps(summary, indent=2))
    print("\n| bucket | calls | median tokens/s, first half | second half |")
    print("|---|---|---|---|")
    for bk, v in per_bucket.items():
        f, s = v["first_half_median_tokens_per_s"], v["second_half_median_tokens_per_s"]
        print(f"| {bk} | {v['calls']} | {f or 0:,.0f} | {s or 0:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
