"""DeepSeek-OCR (v1) adapter: what can run here, and what cannot.

Runs here (CPU): the five modes' geometry and token counts against optimem's Mode table,
the preprocessing (shapes, crop grids), the prompt layout, the vision-token composition, driven through stand-in modules that carry the attribute names
and tensor shapes of DeepSeek-OCR's own modules (a test double, never used for a figure),
and the missing-weights error.

Cannot run here: DeepSeek-OCR's own code. It comes only with the checkpoint directory
(`trust_remote_code`), which cannot be downloaded in this environment, and it targets
transformers 4.46.3, not the 5.x installed for DeepSeek-OCR 2. Loading it, `model.generate`
with `images=`, and decoding real pages are therefore untested here; on a machine with the
weights, `OPTIMEM_DEEPSEEK_OCR_MODEL=DIR pytest -m weights` is where such a test belongs.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from PIL import Image  # noqa: E402

from optimem.backends.deepseek_ocr import (  # noqa: E402
    IMAGE_TOKEN_ID,
    MODEL_ENV,
    DeepseekOcrBackend,
    crop_grid,
    placeholder_count,
    preprocess,
    vision_tokens,
)
from optimem.errors import BackendUnavailable  # noqa: E402
from optimem.modes import LADDER, Mode  # noqa: E402


def test_placeholders_match_mode_positions():
    for mode in LADDER:
        assert placeholder_count(mode) == mode.positions, mode
    assert [placeholder_count(m) for m in LADDER] == [693, 421, 273, 111, 73]
    assert crop_grid(1280, 1280) == (2, 2) and crop_grid(600, 600) == (1, 1)
    assert placeholder_count(Mode.GUNDAM, 600, 600) == 273  # small page: global view only


@pytest.mark.parametrize("mode", LADDER)
def test_preprocess_shapes(mode):
    view, crops, grid = preprocess(Image.new("RGB", (mode.canvas, mode.canvas), "white"), mode)
    side = 1024 if mode is Mode.GUNDAM else mode.canvas
    assert view.shape == (3, side, side)
    assert float(view.max()) == pytest.approx(1.0)  # white → +1 after (x - 0.5) / 0.5
    if mode is Mode.GUNDAM:
        assert grid == (2, 2) and crops.shape == (4, 3, 640, 640)
    else:
        assert crops is None


class _Stand(torch.nn.Module):
    """Stand-in for DeepSeek-OCR's modules: same names, same shapes, trivial maths."""

    def __init__(self, dim=8):
        super().__init__()
        self.sam_model = lambda x: x.mean(1, keepdim=True).repeat(1, 4, 1, 1)[:, :, ::64, ::64]
        self.vision_model = lambda x, sam: torch.cat(
            [torch.zeros(x.shape[0], 1, 4), sam.flatten(2).transpose(1, 2)], 1
        )
        self.projector = torch.nn.Linear(8, dim)
        self.image_newline = torch.nn.Parameter(torch.full((dim,), 7.0))
        self.view_seperator = torch.nn.Parameter(torch.full((dim,), 9.0))


@pytest.mark.parametrize("mode", LADDER)
def test_vision_tokens_fill_every_placeholder(mode):
    view, crops, grid = preprocess(Image.new("RGB", (mode.canvas, mode.canvas), "gray"), mode)
    with torch.no_grad():
        feats = vision_tokens(_Stand(), view, crops, grid)
    assert feats.shape[0] == placeholder_count(mode)
    assert torch.equal(feats[-1], torch.full((8,), 9.0))  # the view separator closes the image
    newlines = int((feats == 7.0).all(-1).sum())
    rows = {Mode.TINY: 8, Mode.SMALL: 10, Mode.BASE: 16, Mode.LARGE: 20, Mode.GUNDAM: 16 + 20}[mode]
    assert newlines == rows


@pytest.mark.slow
def test_prompt_layout(tiny_ocr2):
    import threading

    tokenizer = tiny_ocr2[1].tokenizer
    b = DeepseekOcrBackend.__new__(DeepseekOcrBackend)
    b._tokenizer, b._model, b.prompt, b._lock = tokenizer, object(), "<image>\nFree OCR.", threading.RLock()
    ids = b.prompt_ids(Mode.TINY, 73)
    assert ids[0] == 0 and ids[1:74] == [IMAGE_TOKEN_ID] * 73
    assert ids[74:] == tokenizer.encode("\nFree OCR.", add_special_tokens=False)


def test_missing_weights_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    with pytest.raises(BackendUnavailable) as err:
        DeepseekOcrBackend(model=str(tmp_path / "no-such-dir"), device="cpu")
    assert "no-such-dir" in str(err.value) and MODEL_ENV in str(err.value)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(BackendUnavailable, match="deepseek-ai/DeepSeek-OCR"):
        DeepseekOcrBackend(device="cpu")


def test_incompatible_remote_code_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(
        '{"model_type": "deepseek_vl_v2", "auto_map": {"AutoModel": "nope.Missing"}}'
    )
    b = DeepseekOcrBackend(model=str(tmp_path), device="cpu")
    with pytest.raises(BackendUnavailable, match=r"4\.46\.3"):
        b.load()
