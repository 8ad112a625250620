"""DeepSeek-OCR (v1) backend: the model's own code (trust_remote_code) in its five modes.

Modes, exactly as DeepSeek's own `infer()` sets them (base_size, image_size, crop_mode):

    Tiny    512 / 512,  no crop    64 vision tokens   73 positions
    Small   640 / 640,  no crop   100                111
    Base   1024 / 1024, no crop   256                273
    Large  1280 / 1280, no crop   400                421
    Gundam 1024 global + 640 crops (2-9 by aspect ratio; 2×2 on a square 1280 page): 693

Positions count one newline token per row of vision tokens and one view separator, as the
model lays them out. Prompts: "<image>\\nFree OCR." for recall; the markdown prompt as an
option. Generation is greedy with DeepSeek's repetition guard (no_repeat_ngram_size=20).

Vision tokens are stored. `encode` runs the loaded model's own modules (`sam_model`,
`vision_model`, `projector`, `image_newline`, `view_seperator`) in the order its forward uses
them and stores the result. `decode` then calls the model's own `generate` with blank images
(so its vision branch is skipped) and a forward hook on the token-embedding layer that writes
the stored tokens into the image placeholders at prefill. Without a stored blob it decodes
from the page image through the model's own vision path.

Weights: `model=` (a local directory holding DeepSeek's checkpoint and code), else
$OPTIMEM_DEEPSEEK_OCR_MODEL, else deepseek-ai/DeepSeek-OCR from the local cache. The code in
that directory targets transformers 4.46.3 (DeepSeek's requirements.txt); where it does not
import under the installed transformers, loading raises BackendUnavailable saying so.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageOps

from ..errors import BackendUnavailable, RepresentationMismatch
from ..modes import Mode
from . import _torch
from .base import Backend, Capabilities, Decoded, PageInput

_torch.require_torch("deepseek-ocr")

import torch  # noqa: E402

from . import embeddings as emb  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_MODEL = "deepseek-ai/DeepSeek-OCR"
MODEL_ENV = "OPTIMEM_DEEPSEEK_OCR_MODEL"
IMAGE_TOKEN_ID = 128815
BOS_ID = 0
PROMPTS = {
    "free": "<image>\nFree OCR.",
    "markdown": "<image>\n<|grounding|>Convert the document to markdown.",
}
PATCH, DOWNSAMPLE, CROP = 16, 4, 640
MEAN = 0.5


@dataclass(frozen=True)
class ModeSetting:
    """DeepSeek-OCR's `infer()` arguments for one mode."""

    base_size: int
    image_size: int
    crop_mode: bool


MODE_SETTINGS: dict[Mode, ModeSetting] = {
    Mode.TINY: ModeSetting(512, 512, False),
    Mode.SMALL: ModeSetting(640, 640, False),
    Mode.BASE: ModeSetting(1024, 1024, False),
    Mode.LARGE: ModeSetting(1280, 1280, False),
    Mode.GUNDAM: ModeSetting(1024, 640, True),
}


def _queries(size: int) -> int:
    return math.ceil(size / PATCH / DOWNSAMPLE)


def crop_grid(width: int, height: int, min_num: int = 2, max_num: int = 9) -> tuple[int, int]:
    """(columns, rows) of 640 crops for Gundam, chosen as DeepSeek's dynamic preprocessing does:
    the grid whose aspect ratio is closest to the page's, more crops on ties while the page is
    large enough; (1, 1) — no crops — for pages of at most 640×640."""
    if width <= CROP and height <= CROP:
        return (1, 1)
    ratios = sorted(
        {
            (i, j)
            for n in range(min_num, max_num + 1)
            for i in range(1, n + 1)
            for j in range(1, n + 1)
            if min_num <= i * j <= max_num
        },
        key=lambda r: r[0] * r[1],
    )
    aspect, area = width / height, width * height
    best, best_diff = (1, 1), float("inf")
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and area > 0.5 * CROP * CROP * r[0] * r[1]:
            best = r
    return best


def placeholder_count(mode: Mode, width: int | None = None, height: int | None = None) -> int:
    """Image positions in the prompt for a page at `mode`: rows of tokens, a newline per row,
    one view separator; Gundam adds its crops laid out as one grid with a newline per row."""
    mode = Mode.parse(mode)
    s = MODE_SETTINGS[mode]
    side = mode.canvas
    if not s.crop_mode:
        q = _queries(s.image_size)
        return (q + 1) * q + 1
    q = _queries(s.base_size)
    count = (q + 1) * q + 1
    cols, rows = crop_grid(width or side, height or side)
    if cols > 1 or rows > 1:
        qc = _queries(s.image_size)
        count += (qc * cols + 1) * (qc * rows)
    return count


def preprocess(image: Image.Image, mode: Mode) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
    """(global view (3,S,S), crops (n,3,640,640) or None, (columns, rows)) as `infer()` builds them."""
    s = MODE_SETTINGS[Mode.parse(mode)]
    image = image.convert("RGB")
    fill = tuple(int(MEAN * 255) for _ in range(3))
    crops = None
    grid = (1, 1)
    if s.crop_mode:
        grid = crop_grid(*image.size)
        if grid != (1, 1):
            cols, rows = grid
            big = image.resize((CROP * cols, CROP * rows))
            tiles = [
                big.crop((c * CROP, r * CROP, (c + 1) * CROP, (r + 1) * CROP))
                for r in range(rows)
                for c in range(cols)
            ]
            crops = torch.stack([_to_tensor(t) for t in tiles])
        view = ImageOps.pad(image, (s.base_size, s.base_size), color=fill)
    elif s.image_size <= CROP:
        view = image.resize((s.image_size, s.image_size))
    else:
        view = ImageOps.pad(image, (s.image_size, s.image_size), color=fill)
    return _to_tensor(view), crops, grid


def _to_tensor(img: Image.Image) -> torch.Tensor:
    import numpy as np

    arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (arr - MEAN) / MEAN


def vision_tokens(
    inner: Any, view: torch.Tensor, crops: torch.Tensor | None, grid: tuple[int, int]
) -> torch.Tensor:
    """The vision tokens DeepSeek-OCR's forward scatters into the prompt, computed with the
    loaded model's own modules: [crops with newlines, global view with newlines, separator]."""

    def encode(x: torch.Tensor) -> torch.Tensor:
        sam = inner.sam_model(x)
        clip = inner.vision_model(x, sam)
        return inner.projector(torch.cat((clip[:, 1:], sam.flatten(2).permute(0, 2, 1)), dim=-1))

    newline, sep = inner.image_newline, inner.view_seperator
    g = encode(view[None])[0]
    side = math.isqrt(g.shape[0])
    dim = g.shape[-1]
    g = torch.cat([g.view(side, side, dim), newline[None, None].expand(side, 1, dim)], dim=1).reshape(-1, dim)
    parts = [g, sep[None]]
    if crops is not None:
        cols, rows = grid
        loc = encode(crops)
        q = math.isqrt(loc.shape[1])
        loc = loc.view(rows, cols, q, q, dim).permute(0, 2, 1, 3, 4).reshape(rows * q, cols * q, dim)
        loc = torch.cat([loc, newline[None, None].expand(rows * q, 1, dim)], dim=1).reshape(-1, dim)
        parts.insert(0, loc)
    return torch.cat(parts, dim=0)


class DeepseekOcrBackend(Backend):
    """DeepSeek-OCR v1 through its own remote code. See the module docstring.

    Args:
        model: directory of the checkpoint and its code (or a cached hub id).
        device, dtype: default CUDA + bf16 where available, else CPU + float32.
        prompt: "free", "markdown" or a prompt containing "<image>".
        store_vision_tokens: encode() returns the vision tokens (else None: decode from pixels).
        max_new_tokens, ngram_size: generation cap and DeepSeek's no-repeat n-gram size.
        allow_download: fetch from the hub if not cached (default: $OPTIMEM_ALLOW_DOWNLOAD).
    """

    name = "deepseek-ocr"
    capabilities = Capabilities(stores_representation=True, batches=True)

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        prompt: str = "free",
        store_vision_tokens: bool = True,
        max_new_tokens: int = 8192,
        ngram_size: int = 20,
        allow_download: bool | None = None,
        attn_implementation: str | None = None,
    ) -> None:
        self.device = _torch.pick_device(device)
        self.dtype = _torch.pick_dtype(self.device, dtype)
        self.source, self.local_only = _torch.resolve_weights(
            model, env_var=MODEL_ENV, default_id=DEFAULT_MODEL, label="DeepSeek-OCR",
            download=_torch.allow_download(allow_download),
        )  # fmt: skip
        self.prompt = PROMPTS.get(prompt, prompt)
        if "<image>" not in self.prompt:
            raise ValueError(f"prompt must be 'free', 'markdown' or contain <image>; got {prompt!r}")
        self.store_vision_tokens = store_vision_tokens
        self.max_new_tokens, self.ngram_size = max_new_tokens, ngram_size
        self.attn_implementation = _torch.pick_attention(self.device, attn_implementation)
        self.capabilities = Capabilities(stores_representation=store_vision_tokens, batches=True)
        self._model: Any = None
        self._tokenizer: Any = None
        self._fingerprint: str | None = None
        self._lock = threading.RLock()

    def load(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoModel, AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(
                    self.source, trust_remote_code=True, local_files_only=self.local_only
                )
                model = AutoModel.from_pretrained(
                    self.source, trust_remote_code=True, use_safetensors=True, local_files_only=self.local_only,
                    _attn_implementation=self.attn_implementation,
                )  # fmt: skip
            except (ImportError, AttributeError, TypeError, OSError, ValueError) as exc:
                import transformers

                raise BackendUnavailable(
                    f"DeepSeek-OCR: its own code in {self.source!r} did not load under transformers "
                    f"{transformers.__version__} ({type(exc).__name__}: {exc}). That code targets "
                    "transformers==4.46.3 and tokenizers==0.20.3 (DeepSeek's requirements.txt): run "
                    "this backend in such an environment, serve the model with vLLM, or use the "
                    "'deepseek-ocr2' backend (native in transformers >= 5.23)."
                ) from exc
            self._model = model.to(self.device, self.dtype).eval()
            self._tokenizer = tokenizer

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self._tokenizer

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            inner = self.model.model
            h = hashlib.sha256()
            for t in (inner.projector.layers.weight if hasattr(inner.projector, "layers") else next(inner.projector.parameters()),
                      inner.image_newline, inner.view_seperator):  # fmt: skip
                h.update(t.detach().float().cpu().numpy().tobytes())
            self._fingerprint = f"{self.name}:{h.hexdigest()[:20]}"
        return self._fingerprint

    def prompt_ids(self, mode: Mode, n_image: int) -> list[int]:
        """[BOS] + text before <image> + placeholders + text after, as `infer()` tokenizes."""
        before, after = self.prompt.split("<image>", 1)
        enc = lambda s: self.tokenizer.encode(s, add_special_tokens=False) if s else []  # noqa: E731
        return [BOS_ID, *enc(before), *[IMAGE_TOKEN_ID] * n_image, *enc(after)]

    def encode(self, page: PageInput) -> bytes | None:
        if not self.store_vision_tokens:
            return None
        view, crops, grid = preprocess(page.image, page.mode)
        with self._lock, torch.inference_mode():
            inner = self.model.model
            feats = vision_tokens(
                inner,
                view.to(self.device, self.dtype),
                None if crops is None else crops.to(self.device, self.dtype),
                grid,
            )
        return emb.pack(
            {"image": feats},
            fingerprint=self.fingerprint(),
            meta={"mode": page.mode.value, "positions": feats.shape[0]},
        )

    def decode(self, page: PageInput) -> Decoded:
        t0 = time.perf_counter()
        extra: dict[str, Any] = {"reencoded": False}
        feats = None
        if page.representation is not None:
            try:
                packed = emb.unpack(page.representation, fingerprint=self.fingerprint())
                if packed.meta.get("mode") == page.mode.value:
                    feats = packed.tensors["image"]
                else:
                    raise RepresentationMismatch(
                        f"stored vision tokens are for mode {packed.meta.get('mode')}"
                    )
            except RepresentationMismatch as exc:
                log.warning("DeepSeek-OCR: %s; decoding the page from its image", exc)
                extra.update(reencoded=True, reason=str(exc))
        view, crops, grid = preprocess(page.image, page.mode)
        n_image = placeholder_count(page.mode, *page.image.size)
        ids = torch.tensor([self.prompt_ids(page.mode, n_image)], device=self.device)
        s = MODE_SETTINGS[page.mode]
        blank_view = torch.zeros(1, 3, view.shape[-1], view.shape[-1], device=self.device, dtype=self.dtype)
        if feats is None:
            crop_t = crops if crops is not None else torch.zeros(1, 3, s.base_size, s.base_size)
            images = [(crop_t.to(self.device, self.dtype), view[None].to(self.device, self.dtype))]
            extra.setdefault("from_pixels", True)
        else:
            images = [
                (
                    torch.zeros(1, 3, s.base_size, s.base_size, device=self.device, dtype=self.dtype),
                    blank_view,
                )
            ]
        out = self._generate(ids, images, torch.tensor([list(grid)]), feats)
        text = self.tokenizer.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True).strip()
        extra.update(positions=int(ids.shape[1]), tokens=int(out.shape[1] - ids.shape[1]))
        return Decoded(text, 1.0, self.name, time.perf_counter() - t0, None, extra)

    def _generate(self, ids, images, spatial, feats):
        model = self.model
        seq_mask = ids == IMAGE_TOKEN_ID
        handle = None
        if feats is not None:  # write the stored tokens into the placeholders at prefill
            stored = feats.to(self.device, self.dtype)

            def inject(_module, args, output):
                (tokens,) = args[:1]
                mask = tokens == IMAGE_TOKEN_ID
                if int(mask.sum()) == stored.shape[0]:
                    output = output.clone()
                    output[mask] = stored.to(output.dtype)
                return output

            handle = model.get_input_embeddings().register_forward_hook(inject)
        try:
            with self._lock, torch.inference_mode():
                return model.generate(
                    ids, images=images, images_seq_mask=seq_mask, images_spatial_crop=spatial,
                    do_sample=False, eos_token_id=self.tokenizer.eos_token_id,
                    max_new_tokens=self.max_new_tokens, no_repeat_ngram_size=self.ngram_size or None, use_cache=True,
                )  # fmt: skip
        finally:
            if handle is not None:
                handle.remove()

    def decode_many(self, pages: Sequence[PageInput]) -> list[Decoded]:
        return [self.decode(p) for p in pages]


__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ENV",
    "MODE_SETTINGS",
    "PROMPTS",
    "DeepseekOcrBackend",
    "crop_grid",
    "placeholder_count",
    "preprocess",
    "vision_tokens",
]
