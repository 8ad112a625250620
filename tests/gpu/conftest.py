"""GPU tests: the CUDA paths of the DeepSeek-OCR 2 decoder (graphs, Triton kernels, compiled
pieces) on random models of the real architecture, tiny and full size.

Every test here is marked `gpu` and skipped, with the reason, where torch sees no CUDA device.
Run them on a GPU machine with `pytest -m gpu tests/gpu` (README, Development).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from optimem.backends.base import PageInput  # noqa: E402
from optimem.modes import Mode  # noqa: E402

from ..backends.conftest import build_tiny_ocr2, page_image  # noqa: E402

CUDA = torch.cuda.is_available()
SKIP_REASON = "needs a CUDA GPU (torch sees none): run tests/gpu on a GPU machine, see README Development"


needs_cuda = [
    pytest.mark.gpu,
    pytest.mark.skipif(not CUDA, reason=SKIP_REASON),
]
"""`pytestmark` for every module here."""


def tiny_on_cuda(dtype):
    """The tiny test model (tests/backends/conftest.py), moved to the GPU in `dtype`."""
    model, processor = build_tiny_ocr2(seed=0)
    return model.to("cuda", dtype).eval(), processor


@pytest.fixture(scope="module")
def tiny_fp32():
    return tiny_on_cuda(torch.float32)


@pytest.fixture(scope="module")
def tiny_bf16():
    return tiny_on_cuda(torch.bfloat16)


def mixed_pages(n: int, seed: int = 0) -> list[PageInput]:
    """`n` distinct pages, Gundam, Base and Small in turn (prompts of 837, 261 and 149)."""
    modes = (Mode.GUNDAM, Mode.BASE, Mode.SMALL)
    return [
        PageInput(page_image(f"page {seed + i} words", modes[i % 3], seed + i), modes[i % 3])
        for i in range(n)
    ]
