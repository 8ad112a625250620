"""DeepSeek-OCR 2: the backend, its static-cache decoder, Triton kernels, views and test models.

views.py     optimem's modes → DeepSeek-OCR 2's image budgets (833 / 257 / 145 positions)
backend.py   DeepseekOcr2Backend: encode pages to stored embeddings, decode from them
decoder.py   StaticDecoder: static KV cache, CUDA graphs, bucketed compiles
kv.py        KV-cache sizing: bytes per row, length buckets, the memory budget
kernels.py   Triton kernels for the routed experts and the decode attention
testing.py   random models of the real architecture (tiny and full size) for tests/benchmarks
"""

from __future__ import annotations

from .backend import DEFAULT_MODEL, MODEL_ENV, PROMPTS, DeepseekOcr2Backend
from .decoder import StaticDecoder
from .testing import tiny_config, word_tokenizer
from .views import MODE_VIEWS, NATIVE_MODES, View, image_positions, tile_grid

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ENV",
    "MODE_VIEWS",
    "NATIVE_MODES",
    "PROMPTS",
    "DeepseekOcr2Backend",
    "StaticDecoder",
    "View",
    "image_positions",
    "tile_grid",
    "tiny_config",
    "word_tokenizer",
]
