"""DeepSeek-OCR 2 backend on a tiny random model (real config classes, CPU, float32).

Proves: greedy tokens from stored embeddings equal transformers' generate from pixels (both
the static decoder and the hf engine); the embedding blob round-trips bit-exactly through
bytes; a fingerprint mismatch is caught and the page re-encoded; the repetition guard matches
DeepSeek's rule; missing weights raise BackendUnavailable with the way to provide them; the
real loading code reads a saved model directory with local files only.
"""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from optimem.backends import embeddings as emb  # noqa: E402
from optimem.backends import get_backend  # noqa: E402
from optimem.backends.base import PageInput  # noqa: E402
from optimem.backends.deepseek_ocr2 import MODEL_ENV, DeepseekOcr2Backend, image_positions  # noqa: E402
from optimem.errors import BackendUnavailable, RepresentationMismatch  # noqa: E402
from optimem.modes import Mode  # noqa: E402

NEW = 16


def backend(pair, **options):
    model, processor = pair
    options.setdefault("ngram_size", 0)
    options.setdefault("max_new_tokens", NEW)
    return DeepseekOcr2Backend.from_model(model, processor, **options)


def pixels_reference(pair, page: PageInput, b: DeepseekOcr2Backend) -> list[int]:
    """transformers' own generate from the page image (vision tower run inside generate)."""
    model, processor = pair
    inputs = processor(
        images=page.image, text=b.prompt, return_tensors="pt", **b.view(page.mode).processor_kwargs
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)
    ids = out[0, inputs["input_ids"].shape[1] :].tolist()
    eos = processor.tokenizer.eos_token_id
    return ids[: ids.index(eos)] if eos in ids else ids


def tokens_of(b: DeepseekOcr2Backend, pages) -> list[list[int]]:
    """Greedy token ids the backend generates for pages (through its public decode path)."""
    decoded = b.decode_many(pages)
    return [b.tokenizer(d.text, add_special_tokens=False)["input_ids"] for d in decoded]


def test_mode_mapping_and_positions():
    assert image_positions(Mode.GUNDAM) == 257 + 4 * 144 == 833
    assert image_positions(Mode.LARGE) == image_positions(Mode.BASE) == 257
    assert image_positions(Mode.SMALL) == image_positions(Mode.TINY) == 145
    assert image_positions(Mode.GUNDAM, 1280, 640) == 257 + 2 * 144  # wide page: 2×1 tiles


def test_backend_reports_what_its_model_sees(tiny_ocr2):
    # budgets and stats use Backend.positions: v2's counts, not v1's 693/421/273/111/73
    b = backend(tiny_ocr2)
    assert [b.positions(m) for m in Mode] == [833, 257, 257, 145, 145]


def test_prompt_ids_match_processor(tiny_ocr2, make_page):
    b = backend(tiny_ocr2)
    for mode in (Mode.BASE, Mode.SMALL):
        page = make_page("prompt check", mode)
        inputs = tiny_ocr2[1](
            images=page.image, text=b.prompt, return_tensors="pt", **b.view(mode).processor_kwargs
        )
        assert b.prompt_ids(image_positions(mode)) == inputs["input_ids"][0].tolist()


@pytest.mark.slow
@pytest.mark.parametrize("mode", [Mode.BASE, Mode.SMALL])
def test_stored_embeddings_decode_equals_pixels(tiny_ocr2, make_page, mode):
    static, hf = backend(tiny_ocr2), backend(tiny_ocr2, engine="hf")
    pages = [make_page("alpha beta gamma", mode), make_page("delta epsilon", mode, seed=3)]
    refs = [pixels_reference(tiny_ocr2, p, static) for p in pages]
    assert refs[0] != refs[1], "the image must change the tokens, else equality proves nothing"
    blobs = static.encode_many(pages)
    stored = [PageInput(p.image, p.mode, representation=blob) for p, blob in zip(pages, blobs, strict=True)]
    for engine in (static, hf):
        got = [engine._generate([_prompt(engine, s)])[0][0] for s in stored]
        assert got == refs, engine.engine
    decoded = static.decode_many(stored)
    assert all(d.extra["reencoded"] is False and "from_pixels" not in d.extra for d in decoded)
    assert [d.extra["positions"] for d in decoded] == [len(static.prompt_ids(image_positions(mode)))] * 2


def _prompt(b: DeepseekOcr2Backend, page: PageInput):
    feats, problem = b._stored_features(page)
    assert problem is None and feats is not None
    ids = torch.tensor(b.prompt_ids(feats.shape[0]))
    with torch.no_grad():
        x = b.model.get_input_embeddings()(ids)
        x[ids == b.model.config.image_token_id] = feats
    return x


@pytest.mark.slow
def test_gundam_tiles_and_mixed_batch(tiny_ocr2, make_page):
    b = backend(tiny_ocr2)
    pages = [
        make_page("tiles page", Mode.GUNDAM),
        make_page("base page", Mode.BASE),
        make_page("small page", Mode.SMALL),
    ]
    blobs = b.encode_many(pages)
    assert [emb.unpack(x).tensors["image"].shape[0] for x in blobs] == [833, 257, 145]
    stored = [PageInput(p.image, p.mode, representation=x) for p, x in zip(pages, blobs, strict=True)]
    batched = b.decode_many(stored)  # three prompt lengths in one batch
    single = [b.decode(p) for p in stored]
    assert [d.text for d in batched] == [d.text for d in single]
    assert batched[0].text == b.tokenizer.decode(pixels_reference(tiny_ocr2, pages[0], b)).strip()


@pytest.mark.slow
def test_blob_round_trip_bit_exact(tiny_ocr2, make_page):
    b = backend(tiny_ocr2)
    page = make_page("round trip", Mode.SMALL)
    feats = b._features([page])[0]
    blob = b.encode(page)
    assert isinstance(blob, bytes)
    packed = emb.unpack(bytes(bytearray(blob)), fingerprint=b.fingerprint())  # as a BLOB column gives it back
    assert torch.equal(packed.tensors["image"], feats)
    assert packed.meta["mode"] == "small" and packed.meta["positions"] == "145"
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        t = torch.randn(145, 64).to(dtype)
        back = emb.unpack(emb.pack(t, fingerprint="x"), fingerprint="x").tensors["image"]
        assert back.dtype == dtype and back.shape == t.shape
        assert torch.equal(back.view(torch.uint8), t.contiguous().view(torch.uint8))


@pytest.mark.slow
def test_fingerprint_mismatch_reencodes(tiny_ocr2, tiny_ocr2_other, make_page, caplog):
    mine, other = backend(tiny_ocr2), backend(tiny_ocr2_other)
    assert mine.fingerprint() != other.fingerprint()
    page = make_page("foreign embeddings", Mode.SMALL)
    foreign = other.encode(page)
    with pytest.raises(RepresentationMismatch):
        emb.unpack(foreign, fingerprint=mine.fingerprint())
    with caplog.at_level(logging.WARNING, logger="optimem.backends.deepseek_ocr2"):
        got = mine.decode(PageInput(page.image, page.mode, representation=foreign))
    assert got.extra["reencoded"] is True
    assert "re-encoding" in caplog.text
    assert got.text == mine.decode(page).text  # read from its own pixels, not the foreign blob
    junk = mine.decode(PageInput(page.image, page.mode, representation=b"not a blob at all"))
    assert junk.extra["reencoded"] is True and junk.text == got.text


def _deepseek_guard(ids: list[int], n: int, window: int, whitelist=()) -> set[int]:
    """DeepSeek's NoRepeatNGramLogitsProcessor rule, written out plainly (the reference)."""
    if len(ids) < n:
        return set()
    prefix = tuple(ids[-(n - 1) :])
    banned = {
        ids[i + n - 1]
        for i in range(max(0, len(ids) - window), len(ids) - n + 1)
        if tuple(ids[i : i + n - 1]) == prefix
    }
    return banned - set(whitelist)


@pytest.mark.slow
def test_repetition_guard_matches_deepseek_rule(tiny_ocr2, make_page):
    n, window = 2, 16
    b = backend(tiny_ocr2, ngram_size=n, ngram_window=window, max_new_tokens=40)
    page = make_page("loops loops loops", Mode.SMALL)
    prompt = _prompt(b, PageInput(page.image, page.mode, representation=b.encode(page)))
    ids = b._generate([prompt])[0][0]
    # Replay greedy decoding with the reference rule on transformers' own logits.
    model = b.model
    ref: list[int] = []
    with torch.no_grad():
        for _ in range(len(ids)):
            x = torch.cat([prompt, model.get_input_embeddings()(torch.tensor(ref, dtype=torch.long))])
            logits = model(inputs_embeds=x[None]).logits[0, -1]
            for t in _deepseek_guard(ref, n, window, b._whitelist()):
                logits[t] = float("-inf")
            ref.append(int(logits.argmax()))
            if ref[-1] == b.tokenizer.eos_token_id:
                ref.pop()
                break
    assert ids == ref
    unguarded = backend(tiny_ocr2, max_new_tokens=40)._generate([prompt])[0][0]
    assert unguarded != ids, "this page loops without the guard, so the guard was exercised"


def test_missing_weights_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(BackendUnavailable) as err:
        DeepseekOcr2Backend(model=str(tmp_path / "nowhere"), device="cpu")
    assert "nowhere" in str(err.value) and MODEL_ENV in str(err.value)
    monkeypatch.setenv(MODEL_ENV, str(tmp_path))  # a directory without a model in it
    with pytest.raises(BackendUnavailable, match=r"config\.json"):
        DeepseekOcr2Backend(device="cpu")
    monkeypatch.delenv(MODEL_ENV)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(BackendUnavailable) as err:
        DeepseekOcr2Backend(device="cpu")  # default hub id, not in the (empty) cache
    message = str(err.value)
    assert "deepseek-community/DeepSeek-OCR-2" in message and "model=" in message
    assert "allow_download" in message


@pytest.mark.slow
def test_loads_a_local_directory(tiny_ocr2, tmp_path, monkeypatch, make_page):
    model, processor = tiny_ocr2
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    monkeypatch.setenv(MODEL_ENV, str(tmp_path))
    b = get_backend("deepseek-ocr2", device="cpu", ngram_size=0, max_new_tokens=NEW)
    assert isinstance(b, DeepseekOcr2Backend) and b.local_only
    assert b.fingerprint() == backend(tiny_ocr2).fingerprint()  # same weights, same identity
    page = make_page("from disk", Mode.SMALL)
    blob = backend(tiny_ocr2).encode(page)  # made by the in-memory twin: accepted
    got = b.decode(PageInput(page.image, page.mode, representation=blob))
    assert got.extra["reencoded"] is False
    assert got.text == b.tokenizer.decode(pixels_reference(tiny_ocr2, page, b)).strip()
    assert 0.0 < got.confidence <= 1.0


def test_a_directory_without_weights_is_unavailable_on_load(tiny_ocr2, tmp_path):
    tiny_ocr2[0].config.save_pretrained(tmp_path)  # config.json, no weights, no processor
    b = DeepseekOcr2Backend(model=str(tmp_path), device="cpu")
    with pytest.raises(BackendUnavailable, match=MODEL_ENV):
        b.load()
