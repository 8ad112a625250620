"""KV memory of the DeepSeek-OCR 2 decoder, on the CPU: sizing, buckets, budget, growth, warm-up.

The arithmetic the docs quote (61,440 bytes per cached position per row at full size, 480 MiB
per row at the 8,192-position context), the caches the decoder really allocates on the tiny
random model, the typed error a budget raises before allocating, and rows moved to a longer
cache mid-call decoding exactly as in a cache sized up front. No CUDA needed.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from optimem.backends.deepseek_ocr2 import StaticDecoder, kv, testing  # noqa: E402
from optimem.errors import BackendError, BackendMemoryError  # noqa: E402


def test_full_size_kv_per_row_from_the_config():
    shape = kv.kv_shape(testing.full_size_config().text_config, dtype_bytes=2)
    # 12 layers × 10 kv heads × 128 head size × (K and V) × 2 bytes (bf16)
    assert shape.bytes_per_position == 12 * 10 * 128 * 2 * 2 == 61_440
    assert shape.bytes(1, 8192) == 503_316_480  # 480 MiB a row at the full context
    assert shape.bytes(64, 8192) == 30 * 2**30  # the earlier up-front cache at max_batch 64 (32.2 GB)
    assert shape.bytes(1, 1024) == 60 * 2**20  # a Gundam page + 128 tokens: its 1,024 bucket


def test_length_buckets_double_up_to_the_context():
    assert kv.length_bucket(1, 8192) == 512
    assert kv.length_bucket(965, 8192) == 1024
    assert kv.length_bucket(1025, 8192) == 2048
    assert kv.length_bucket(6000, 6000) == 6000  # capped at a context that is no power of two
    assert kv.buckets(8192) == [512, 1024, 2048, 4096, 8192]
    with pytest.raises(BackendMemoryError, match="context"):
        kv.length_bucket(8193, 8192)


def test_budget_forms():
    assert kv.resolve_budget(None, 100) is None
    assert kv.resolve_budget(5 * 2**30, 100) == 5 * 2**30
    assert kv.resolve_budget(0.5, 80 * 2**30) == 40 * 2**30
    for bad in (0, -1, 0.0, 1.5, True):
        with pytest.raises(ValueError):
            kv.resolve_budget(bad, 100)


def test_caches_allocated_per_bucket_are_the_computed_size(tiny_ocr2):
    model, _ = tiny_ocr2
    dec = StaticDecoder(model)
    prompts = testing.random_prompts(model, 3, 149, seed=0)
    dec.generate(prompts, max_new_tokens=8, eos_token_id=None)
    cfg = model.config.text_config
    per_position = cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 2 * 4  # fp32
    assert dec.memory()["kv_bytes_per_position_per_row"] == per_position
    ((rows, length), slot), *_ = dec._slots.items()
    assert (rows, length) == (4, 512)  # the batch and length buckets of 3 rows × (149 + 8)
    assert sum(t.numel() * t.element_size() for t in slot.k + slot.v) == rows * length * per_position


def test_budget_refuses_before_allocating_and_still_serves_what_fits(tiny_ocr2):
    model, _ = tiny_ocr2
    probe = StaticDecoder(model)
    prompts = testing.random_prompts(model, 8, 149, seed=1)
    one = probe.kv_bytes(1, 512) + kv.state_bytes(1, probe.max_positions)
    one += kv.workspace_bytes(model.config.text_config, 1, 149, 4)
    dec = StaticDecoder(model, max_gpu_memory=probe.weight_bytes + one)
    with pytest.raises(BackendMemoryError, match="max_batch") as err:
        dec.generate(prompts, max_new_tokens=8, eos_token_id=None)
    assert isinstance(err.value, BackendError)
    assert "8 rows" in str(err.value) and "bytes per position per row" in str(err.value)
    assert dec.memory()["cache_total"] == 0  # nothing was allocated for the refused call
    assert len(dec.generate(prompts[:1], max_new_tokens=8, eos_token_id=None)) == 1
    with pytest.raises(BackendMemoryError):
        dec.generate(prompts, max_new_tokens=8, eos_token_id=None)
    assert list(dec.memory()["caches"]) == ["1x512"]  # a refused call frees no cache


def test_caches_cover_smaller_calls_and_idle_ones_are_freed_to_make_room(tiny_ocr2):
    model, _ = tiny_ocr2
    probe = StaticDecoder(model)
    short = testing.random_prompts(model, 2, 149, seed=2)
    long = testing.random_prompts(model, 1, 600, seed=4)
    dec = StaticDecoder(model)
    dec.generate(short, max_new_tokens=8, eos_token_id=None)
    dec.generate(short[:1], max_new_tokens=8, eos_token_id=None)  # 1 row fits the 2-row cache
    assert list(dec.memory()["caches"]) == ["2x512"]
    # Under a budget that holds one cache beside the weights, a call the 2-row cache cannot
    # serve (600 positions) frees it, idle, to make room.
    ws = kv.workspace_bytes(model.config.text_config, 1, 600, 4)
    need = probe.kv_bytes(1, 1024) + kv.state_bytes(1, probe.max_positions) + ws
    tight = StaticDecoder(model, max_gpu_memory=probe.weight_bytes + need)
    tight.generate(short, max_new_tokens=8, eos_token_id=None)
    tight.generate(long, max_new_tokens=8, eos_token_id=None)
    assert list(tight.memory()["caches"]) == ["1x1024"]


def test_rows_moved_to_a_longer_cache_decode_as_in_one_sized_up_front(tiny_ocr2, monkeypatch):
    model, _ = tiny_ocr2
    prompts = testing.random_prompts(model, 2, 149, seed=3)
    monkeypatch.setattr(kv, "MIN_LENGTH", 64)
    monkeypatch.setattr(kv, "GROW_HEADROOM", 8)
    grown = StaticDecoder(model)  # 149 + 8 → a 256-position cache, then 512 after 107 steps
    got = grown.generate(prompts, max_new_tokens=140, eos_token_id=None, ngram_size=0)
    assert grown.last_stats["kv_grew"] == 1 and grown.last_stats["kv_length"] == 512
    whole = StaticDecoder(model, kv="eager")
    want = whole.generate(prompts, max_new_tokens=140, eos_token_id=None, ngram_size=0)
    assert whole.last_stats["kv_grew"] == 0
    assert [ids for ids, _ in got] == [ids for ids, _ in want]
    assert [round(lp, 5) for _, lp in got] == [round(lp, 5) for _, lp in want]


def test_warm_up_captures_on_the_cache_later_calls_are_given(tiny_ocr2, monkeypatch):
    """Warm-up goes largest batch and longest prompt first: smallest first, batch 8's cache
    would replace batch 1's and the first single-page call would capture its graph after all.
    The graphs are recorded here instead of captured (no CUDA); their keys name the cache."""
    model, _ = tiny_ocr2
    dec = StaticDecoder(model)
    dec.cuda_graphs = True  # a CUDA run's bookkeeping, without the capture
    captured: set = set()
    monkeypatch.setattr(
        dec, "_graph", lambda batch, seg, guard: captured.add(dec._graph_key(batch, seg, guard))
    )
    dec.warmup((1, 8), (149, 837), max_new_tokens=64, eos_token_id=None)
    assert list(dec.memory()["caches"]) == ["8x1024"]
    for n, length in ((1, 149), (1, 837), (8, 149), (8, 837)):
        with torch.inference_mode():
            batch, longest, guard = dec._setup(n, length, 64, None, 20, 90, (), True)
        seg = min(longest, -(-(length + 1) // dec.SEGMENT) * dec.SEGMENT)  # one segment: 64 tokens
        assert dec._graph_key(batch, seg, guard) in captured, (n, length)
