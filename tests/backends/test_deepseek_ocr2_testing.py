"""The random DeepSeek-OCR 2 models that tests and benchmarks build have the sizes they claim.

The GPU benchmark once timed a tiny model as the full-size one; this pins that its non-smoke
config is the checkpoint's (counted on the meta device: no memory, no GPU), and that the
decoder's batch buckets and guard settings do not depend on a call's token count.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend, testing  # noqa: E402
from optimem.backends.deepseek_ocr2.decoder import BATCH_BUCKETS, bucket  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def benchmark_module():
    spec = importlib.util.spec_from_file_location("gpu_deepseek", ROOT / "benchmarks" / "gpu_deepseek.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_size_config_has_the_checkpoint_sizes():
    cfg = testing.full_size_config()
    text = cfg.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.n_routed_experts) == (1280, 12, 64)
    assert (text.num_experts_per_tok, text.n_shared_experts, text.vocab_size) == (6, 2, 129280)
    assert cfg.vision_config.encoder_config.hidden_size == 896
    assert testing.parameter_count(cfg) == testing.FULL_SIZE_PARAMS
    assert round(testing.FULL_SIZE_PARAMS / 1e9, 2) == 3.39


def test_benchmark_times_the_full_size_model_unless_smoke():
    bench = benchmark_module()
    assert testing.parameter_count(bench.model_config(smoke=False)) == testing.FULL_SIZE_PARAMS
    assert testing.parameter_count(bench.model_config(smoke=True)) < 50_000_000


def test_batch_buckets():
    assert [bucket(n) for n in (1, 2, 3, 5, 8, 9, 33, 64, 65, 256)] == [1, 2, 4, 8, 8, 16, 64, 64, 128, 256]
    assert bucket(300) == 300
    assert list(BATCH_BUCKETS) == sorted(BATCH_BUCKETS)


@pytest.mark.slow
def test_guard_settings_do_not_depend_on_the_token_count(tiny_ocr2, make_page):
    # What the compiled head sees (window, index sizes) is the same for 8 and 16 new tokens,
    # and the shorter call's tokens are a prefix of the longer one's.
    b = DeepseekOcr2Backend.from_model(*tiny_ocr2, max_new_tokens=16)
    page = make_page("guard window", seed=5)
    short = b._generate([_prompt(b, page)], max_new_tokens=8)[0][0]
    guard_short = b.decoder().guard
    long = b._generate([_prompt(b, page)], max_new_tokens=16)[0][0]
    guard_long = b.decoder().guard
    assert guard_short is guard_long and guard_long.window == 90
    assert long[: len(short)] == short


def _prompt(b, page):
    feats = b._features([page])[0]
    ids = torch.tensor(b.prompt_ids(feats.shape[0]))
    with torch.no_grad():
        x = b.model.get_input_embeddings()(ids)
        x[ids == b.model.config.image_token_id] = feats
    return x
