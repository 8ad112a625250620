"""DeepSeek-OCR 2 backend: transformers' native model; stores vision embeddings; fast batched decode.

What it does
    encode(page)   runs the vision tower (SAM + Qwen2 encoder) and the projector once and
                   returns the embeddings the decoder consumes, as safetensors bytes carrying
                   dtype, shape and the model's fingerprint (see `embeddings.py`).
    decode(page)   generates from the stored embeddings without running the vision encoder.
                   Embeddings from another model are never fed to this one: the page is
                   re-encoded from its image, a warning is logged and
                   `Decoded.extra["reencoded"]` is True.
    decode_many    reads many pages in one batched generation.

Modes
    DeepSeek-OCR 2 has one dynamic mode; optimem's ladder maps onto three of its processor's
    budgets, 833 / 257 / 145 image positions (`views.py`).

Speed (CUDA)
    Decoding uses its own static-KV-cache loop over the model's own weights (`StaticDecoder`,
    `decoder.py`): prefill per page, then one CUDA graph per batch bucket that runs a whole
    decode step (embedding → 12 layers → logits → repetition guard → greedy pick) with no host
    sync; Triton kernels (`kernels.py`) run the routed experts at small batch (grouped GEMM
    above) and the attention over the cache. What torch.compile sees is bucketed, so a process
    that decodes for weeks compiles a bounded number of times. bf16 is the default on CUDA;
    float32 works at every batch size through the Triton expert kernels (slower: it is there to
    check against transformers). transformers' `generate` is kept as `engine="hf"` (the
    reference path).

Weights
    `model=` (a directory or hub id), else $OPTIMEM_DEEPSEEK_OCR2_MODEL, else
    deepseek-community/DeepSeek-OCR-2 if it is already in the local Hugging Face cache. Files
    are loaded with local_files_only=True unless `allow_download=True`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

from ...errors import RepresentationMismatch
from ...modes import Mode
from .. import _torch
from ..base import Backend, Capabilities, Decoded, PageInput

_torch.require_torch("deepseek-ocr2")

import torch  # noqa: E402  (after the friendly import check above)

from .. import embeddings as emb  # noqa: E402
from .decoder import StaticDecoder  # noqa: E402
from .views import MODE_VIEWS, VIEWS, View, image_positions  # noqa: E402

log = logging.getLogger(__name__)

DEFAULT_MODEL = "deepseek-community/DeepSeek-OCR-2"
MODEL_ENV = "OPTIMEM_DEEPSEEK_OCR2_MODEL"
PROMPTS = {
    "free": "<image>\nFree OCR.",
    "markdown": "<image>\n<|grounding|>Convert the document to markdown.",
}
"""DeepSeek's own prompts: plain text for recall, markdown with layout as an option."""


class DeepseekOcr2Backend(Backend):
    """DeepSeek-OCR 2 through transformers' `DeepseekOcr2ForConditionalGeneration`.

    Args:
        model: a local directory or hub id (else $OPTIMEM_DEEPSEEK_OCR2_MODEL, else
            deepseek-community/DeepSeek-OCR-2 from the local cache).
        device: "cuda", "cpu", … (default: CUDA when visible).
        dtype: torch dtype or its name (default: bf16 on CUDA, float32 on the CPU).
        prompt: "free" (plain text, for recall), "markdown", or a prompt with "<image>".
        max_new_tokens: cap on tokens generated per page.
        ngram_size, ngram_window: the repetition guard (0 turns it off); DeepSeek uses 20/90.
        engine: "static" (own static-cache decoder, CUDA graphs on GPU), "hf" (transformers'
            generate), or "auto" (static).
        max_batch: pages per batched generation (default 64 on CUDA, 8 on the CPU).
        allow_download: fetch from the hub if not cached (default: $OPTIMEM_ALLOW_DOWNLOAD).
        attn_implementation: for the transformers modules (default SDPA; flash-attention 2 for
            the language model where flash_attn is installed).
        decoder_options: passed to `StaticDecoder` (cuda_graphs, moe, attention, compile, kv, …).
        ignore_eos: always generate max_new_tokens (benchmarks on random weights only).
        max_gpu_memory: memory budget on the device for weights + KV caches + a call's
            workspace: bytes (int) or a share of the card (float in (0, 1]). KV caches are
            allocated per batch and length bucket when first used and idle ones are freed to
            make room; a decode that cannot fit raises `BackendMemoryError`. Default: none
            beyond the card's own memory (running out of it raises the same error).
    """

    name = "deepseek-ocr2"
    capabilities = Capabilities(stores_representation=True, batches=True)

    @classmethod
    def positions(cls, mode: Mode) -> int:
        """Image positions DeepSeek-OCR 2 sees for a square page at `mode` (833 / 257 / 145)."""
        return image_positions(mode)

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: Any = None,
        prompt: str = "free",
        max_new_tokens: int = 4096,
        ngram_size: int = 20,
        ngram_window: int | None = 90,
        engine: str = "auto",
        max_batch: int | None = None,
        allow_download: bool | None = None,
        attn_implementation: str | None = None,
        decoder_options: dict | None = None,
        ignore_eos: bool = False,
        max_gpu_memory: int | float | None = None,
    ) -> None:
        self.device = _torch.pick_device(device)
        self.dtype = _torch.pick_dtype(self.device, dtype)
        self.source, self.local_only = _torch.resolve_weights(
            model,
            env_var=MODEL_ENV,
            default_id=DEFAULT_MODEL,
            label="DeepSeek-OCR 2",
            download=_torch.allow_download(allow_download),
        )
        self.attn_implementation = _torch.pick_attention(self.device, attn_implementation)
        self._configure(prompt, max_new_tokens, ngram_size, ngram_window, engine, max_batch, decoder_options)
        self.max_gpu_memory = max_gpu_memory
        self.ignore_eos = ignore_eos
        self._model: Any = None
        self._processor: Any = None

    @classmethod
    def from_model(cls, model: Any, processor: Any, **options: Any) -> DeepseekOcr2Backend:
        """Wrap an already loaded model and processor (tests, benchmarks, custom loading)."""
        self = cls.__new__(cls)
        param = next(model.parameters())
        self.device = str(param.device)
        self.dtype = param.dtype
        self.source, self.local_only = options.pop("source", "<in-memory model>"), True
        self.attn_implementation = model.config._attn_implementation
        self._configure(
            options.pop("prompt", "free"),
            options.pop("max_new_tokens", 4096),
            options.pop("ngram_size", 20),
            options.pop("ngram_window", 90),
            options.pop("engine", "auto"),
            options.pop("max_batch", None),
            options.pop("decoder_options", None),
        )
        self.ignore_eos = bool(options.pop("ignore_eos", False))
        self.max_gpu_memory = options.pop("max_gpu_memory", None)
        if options:
            raise TypeError(f"unknown options: {', '.join(options)}")
        self._model, self._processor = model.eval(), processor
        return self

    def _configure(
        self, prompt, max_new_tokens, ngram_size, ngram_window, engine, max_batch, decoder_options
    ):
        self.prompt = PROMPTS.get(prompt, prompt)
        if "<image>" not in self.prompt:
            raise ValueError(f"prompt must be 'free', 'markdown' or contain <image>; got {prompt!r}")
        if engine not in ("auto", "static", "hf"):
            raise ValueError(f"engine must be auto, static or hf, not {engine!r}")
        self.engine = "static" if engine == "auto" else engine
        self.max_new_tokens = max_new_tokens
        self.ngram_size = ngram_size
        self.ngram_window = ngram_window
        self.max_batch = max_batch or (64 if self.device.startswith("cuda") else 8)
        self.decoder_options = dict(decoder_options or {})
        self._decoder: StaticDecoder | None = None
        self._fingerprint: str | None = None
        self._lock = threading.RLock()

    # ----- loading -----

    def load(self) -> None:
        """Load weights and processor now (otherwise the first encode/decode does)."""
        with self._lock:
            if self._model is not None:
                return
            from transformers import AutoProcessor, DeepseekOcr2ForConditionalGeneration

            attn: Any = self.attn_implementation
            if attn == "flash_attention_2":  # SAM's relative positions rule it out for vision
                attn = {"": "sdpa", "vision_config": "sdpa", "text_config": "flash_attention_2"}
            t0 = time.perf_counter()
            try:
                model = DeepseekOcr2ForConditionalGeneration.from_pretrained(
                    self.source, dtype=self.dtype, attn_implementation=attn, local_files_only=self.local_only
                )
                processor = AutoProcessor.from_pretrained(self.source, local_files_only=self.local_only)
            except OSError as exc:
                from ...errors import BackendUnavailable

                raise BackendUnavailable(
                    f"DeepSeek-OCR 2: could not load {self.source!r}: {exc}. Set {MODEL_ENV} or pass model=DIR."
                ) from exc
            self._model = model.to(self.device).eval()  # type: ignore[arg-type]
            self._processor = processor
            log.info("loaded DeepSeek-OCR 2 from %s in %.1f s", self.source, time.perf_counter() - t0)

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def processor(self) -> Any:
        self.load()
        return self._processor

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer

    def decoder(self) -> StaticDecoder:
        """The static-cache decoder (built on first use; holds the CUDA graphs)."""
        with self._lock:
            if self._decoder is None:
                options = {
                    "max_batch": self.max_batch,
                    "max_gpu_memory": self.max_gpu_memory,
                    **self.decoder_options,
                }
                self._decoder = StaticDecoder(self.model, **options)
            return self._decoder

    def fingerprint(self) -> str:
        """Model identity: its shape, plus a hash of the weights that make and place the
        embeddings (projector, view separator, queries, SAM patch embedding, token embeddings).
        Independent of dtype and of how the model was loaded."""
        if self._fingerprint is None:
            model = self.model
            h = hashlib.sha256()
            cfg = model.config
            shape = {
                "image_token_id": cfg.image_token_id,
                "text": [
                    cfg.text_config.hidden_size,
                    cfg.text_config.vocab_size,
                    cfg.text_config.num_hidden_layers,
                ],
                "encoder": [
                    cfg.vision_config.encoder_config.hidden_size,
                    cfg.vision_config.encoder_config.num_hidden_layers,
                ],
                "sam": [
                    cfg.vision_config.sam_config.hidden_size,
                    cfg.vision_config.sam_config.num_hidden_layers,
                ],
            }
            h.update(json.dumps(shape, sort_keys=True).encode())
            inner = model.model
            for tensor in (
                inner.multi_modal_projector.weight,
                inner.view_separator,
                inner.vision_tower.query_1024_resolution.weight,
                inner.vision_tower.query_768_resolution.weight,
                inner.vision_tower.sam_encoder.patch_embed.projection.weight,
                inner.language_model.embed_tokens.weight[:64],
            ):
                h.update(tensor.detach().float().cpu().numpy().tobytes())
            self._fingerprint = f"{self.name}:{h.hexdigest()[:20]}"
        return self._fingerprint

    def warm_up(self, batch_sizes: Sequence[int] = (1,), modes: Sequence[Mode] = (Mode.GUNDAM,)) -> float:
        """Pay the decoder's one-time costs now (torch.compile, CUDA graph capture) for these
        batch sizes and page modes; returns the seconds spent. Optional: the first decode of
        each shape pays them otherwise."""
        if self.engine != "static":
            return 0.0
        lengths = sorted({len(self.prompt_ids(image_positions(m))) for m in modes})
        return self.decoder().warmup(
            [min(b, self.max_batch) for b in batch_sizes],
            lengths,
            max_new_tokens=self.max_new_tokens,
            eos_token_id=self.tokenizer.eos_token_id,
            ngram_size=self.ngram_size,
            ngram_window=self.ngram_window,
            whitelist=self._whitelist(),
        )

    # ----- encode -----

    def view(self, mode: Mode) -> View:
        return MODE_VIEWS[Mode.parse(mode)]

    def encode(self, page: PageInput) -> bytes:
        return self.encode_many([page])[0]

    def encode_many(self, pages: Sequence[PageInput], batch_size: int = 16) -> list[bytes]:
        """Embeddings for several pages, batched through the vision tower per view kind."""
        feats = self._features(pages, batch_size)
        fp = self.fingerprint()
        return [
            emb.pack(
                {"image": f},
                fingerprint=fp,
                meta={"mode": p.mode.value, "view": self.view(p.mode).name, "positions": f.shape[0]},
            )
            for p, f in zip(pages, feats, strict=True)
        ]

    def _features(self, pages: Sequence[PageInput], batch_size: int = 16) -> list[torch.Tensor]:
        out: list[torch.Tensor | None] = [None] * len(pages)
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(pages):
            groups.setdefault(self.view(p.mode).name, []).append(i)
        for name, idxs in groups.items():
            view = next(v for v in VIEWS if v.name == name)
            for start in range(0, len(idxs), batch_size):
                chunk = idxs[start : start + batch_size]
                images = [pages[i].image.convert("RGB") for i in chunk]
                inputs = self.processor.image_processor(images, return_tensors="pt", **view.processor_kwargs)
                with self._lock, torch.inference_mode():
                    model = self.model
                    local = inputs.get("pixel_values_local")
                    result = model.get_image_features(
                        pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                        pixel_values_local=None if local is None else local.to(self.device, self.dtype),
                        num_local_patches=inputs["num_local_patches"],
                        return_dict=True,
                    ).pooler_output
                for i, f in zip(chunk, result, strict=True):
                    out[i] = f
        return out  # type: ignore[return-value]

    # ----- decode -----

    def prompt_ids(self, positions: int) -> list[int]:
        """Token ids of the prompt with `positions` image placeholders, as the processor makes them."""
        text = self.prompt.replace("<image>", "<image>" * positions, 1)
        return self.tokenizer(text)["input_ids"]

    def _stored_features(self, page: PageInput) -> tuple[torch.Tensor | None, str | None]:
        """Features from the page's stored blob, or (None, reason) when they cannot be used."""
        if page.representation is None:
            return None, None
        try:
            packed = emb.unpack(page.representation, fingerprint=self.fingerprint())
        except RepresentationMismatch as exc:
            return None, str(exc)
        if packed.meta.get("mode") not in (None, page.mode.value):
            return (
                None,
                f"stored embeddings are for mode {packed.meta.get('mode')}, page is {page.mode.value}",
            )
        return packed.tensors["image"], None

    def decode(self, page: PageInput) -> Decoded:
        return self.decode_many([page])[0]

    def decode_many(self, pages: Sequence[PageInput]) -> list[Decoded]:
        results: list[Decoded] = []
        for start in range(0, len(pages), self.max_batch):
            results.extend(self._decode_batch(pages[start : start + self.max_batch]))
        return results

    def _decode_batch(self, pages: Sequence[PageInput]) -> list[Decoded]:
        t0 = time.perf_counter()
        feats: list[torch.Tensor | None] = []
        extras: list[dict] = []
        redo: list[int] = []
        for i, page in enumerate(pages):
            f, problem = self._stored_features(page)
            extra: dict[str, Any] = {"reencoded": False}
            if f is None:
                redo.append(i)
                if problem is not None:
                    log.warning("DeepSeek-OCR 2: %s; re-encoding the page from its image", problem)
                    extra.update(reencoded=True, reason=problem)
                else:
                    extra["from_pixels"] = True
            feats.append(f)
            extras.append(extra)
        if redo:
            for i, f in zip(redo, self._features([pages[i] for i in redo]), strict=True):
                feats[i] = f
        prompts, n_prompt = [], []
        with torch.inference_mode():
            embed = self.model.get_input_embeddings()
            image_id = self.model.config.image_token_id
            for f in feats:
                assert f is not None
                prompt_ids = torch.tensor(self.prompt_ids(f.shape[0]), device=self.device)
                x = embed(prompt_ids)
                x[prompt_ids == image_id] = f.to(self.device, x.dtype)
                prompts.append(x)
                n_prompt.append(int(prompt_ids.numel()))
        generated = self._generate(prompts)
        seconds = (time.perf_counter() - t0) / max(len(pages), 1)
        out = []
        for ids_logp, extra, n in zip(generated, extras, n_prompt, strict=True):
            ids, mean_logp = ids_logp
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            extra.update(tokens=len(ids), positions=n, engine=self.engine)
            out.append(Decoded(text, float(math.exp(mean_logp)), self.name, seconds, None, extra))
        return out

    def _whitelist(self) -> list[int]:
        ids = []
        for token in ("<td>", "</td>"):  # DeepSeek exempts table cells from the guard
            tid = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != self.tokenizer.unk_token_id:
                ids.append(tid)
        return ids

    def _generate(self, prompts: list[torch.Tensor], **kw: Any) -> list[tuple[list[int], float]]:
        eos = self.tokenizer.eos_token_id
        max_new = kw.pop("max_new_tokens", self.max_new_tokens)
        kw.setdefault("ignore_eos", self.ignore_eos)
        if self.engine == "static":
            return self.decoder().generate(
                prompts,
                max_new_tokens=max_new,
                eos_token_id=eos,
                ngram_size=self.ngram_size,
                ngram_window=self.ngram_window,
                whitelist=self._whitelist(),
                **kw,
            )
        return [self._hf_generate(p, max_new, eos, **kw) for p in prompts]

    def _hf_generate(self, prompt: torch.Tensor, max_new: int, eos: int | None, ignore_eos: bool = False):
        """transformers' own generate from input embeddings (the reference path)."""
        with self._lock, torch.inference_mode():
            out = self.model.generate(
                inputs_embeds=prompt[None],
                attention_mask=torch.ones(1, prompt.shape[0], dtype=torch.long, device=self.device),
                max_new_tokens=max_new,
                min_new_tokens=max_new if ignore_eos else None,
                do_sample=False,
                no_repeat_ngram_size=self.ngram_size or None,
                eos_token_id=eos,
                pad_token_id=eos,
                output_scores=True,
                return_dict_in_generate=True,
            )
        ids = out.sequences[0].tolist()
        logps = [float(s[0].float().log_softmax(-1)[i]) for s, i in zip(out.scores, ids, strict=False)]
        if eos is not None and not ignore_eos and eos in ids:
            ids = ids[: ids.index(eos)]
        return ids, sum(logps) / max(len(logps), 1)

    def close(self) -> None:
        self._decoder = None
        self._model = self._processor = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


__all__ = ["DEFAULT_MODEL", "MODEL_ENV", "PROMPTS", "DeepseekOcr2Backend"]
