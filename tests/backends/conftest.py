"""Tiny DeepSeek models for CPU tests: real config classes, random weights, a tokenizer built here.

The tiny DeepSeek-OCR 2 keeps the real image geometry (SAM at 1024 px, 16 px patches, so 256
queries for the 1024 view and 144 for a 768 view) and shrinks every width and depth, so the
token counts the decoder sees (833 / 257 / 145) are the real ones. Its weights are drawn with
a large spread so that the image changes the greedy tokens (with the default 0.02 every page
decodes to the same string, which would make equality tests vacuous).

Fixtures import torch and transformers lazily and skip when the `gpu` extra is missing, so
other backends' tests in this folder run without it.
"""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from optimem.modes import Mode

WORDS = ["<unk>", "<s>", "</s>", "<image>", "<td>", "</td>", "Free", "OCR", ".", "\n"]
VOCAB_SIZE = 128


def _tokenizer():
    from optimem.backends.deepseek_ocr2 import word_tokenizer

    words = WORDS + [f"w{i}" for i in range(VOCAB_SIZE - len(WORDS))]
    return word_tokenizer(words, unk_token="<unk>", pad_token="</s>")


def tiny_ocr2_config():
    """DeepSeek-OCR 2 config with the real vision geometry and tiny widths."""
    from optimem.backends.deepseek_ocr2 import tiny_config

    return tiny_config(
        vocab_size=VOCAB_SIZE,
        image_token_id=3,
        bos_token_id=1,
        eos_token_id=2,
        initializer_ranges=(0.05, 0.1, 0.3),
    )


def build_tiny_ocr2(seed: int):
    """(model, processor): a random tiny DeepSeek-OCR 2 in float32 on the CPU."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from transformers import DeepseekOcr2ForConditionalGeneration, DeepseekOcr2Processor
    from transformers.models.deepseek_ocr2.image_processing_pil_deepseek_ocr2 import (
        DeepseekOcr2ImageProcessorPil,
    )

    torch.manual_seed(seed)
    model = DeepseekOcr2ForConditionalGeneration(tiny_ocr2_config()).eval()
    with torch.no_grad():  # a visible image signal: projector and separator at unit scale
        model.model.multi_modal_projector.weight.normal_(0, 0.5)
        model.model.view_separator.normal_(0, 1.0)
    processor = DeepseekOcr2Processor(image_processor=DeepseekOcr2ImageProcessorPil(), tokenizer=_tokenizer())
    return model, processor


@pytest.fixture(scope="session")
def tiny_ocr2():
    return build_tiny_ocr2(seed=0)


@pytest.fixture(scope="session")
def tiny_ocr2_other():
    """Same architecture, other weights: a different model as far as fingerprints go."""
    return build_tiny_ocr2(seed=1)


def page_image(text: str, mode: Mode, seed: int = 0) -> Image.Image:
    """A page-like image: lines of text and a few boxes whose layout depends on the text."""
    side = mode.canvas
    img = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(img)
    y = 8
    for i, word in enumerate((text * 40).split()[:400]):
        x = 8 + (i * 97 + seed * 13) % (side - 80)
        draw.text((x, y), word, fill="black")
        if i % 5 == 4:
            y += 14 + (len(word) + seed) % 5
        if y > side - 20:
            break
    k = sum(map(ord, text)) + seed
    for j in range(6):
        x0, y0 = (k * (j + 3) * 37) % (side - 200), (k * (j + 5) * 53) % (side - 200)
        draw.rectangle([x0, y0, x0 + 60 + j * 20, y0 + 40 + j * 10], fill=(k * 7 % 255, 40 * j, 90))
    return img


@pytest.fixture
def make_page():
    from optimem.backends.base import PageInput

    def make(text: str, mode: Mode = Mode.BASE, seed: int = 0, representation: bytes | None = None):
        return PageInput(page_image(text, mode, seed), mode, representation=representation)

    return make
