"""OpticalMemory over a backend that stores a representation: the tiny DeepSeek-OCR 2 (real
config classes, random weights, CPU). Pages keep vision embeddings in the store, recall decodes
from them, aging re-encodes, and budgets count what DeepSeek-OCR 2 sees (833 / 257 / 145)."""

from __future__ import annotations

import pytest

from optimem import Mode, OpticalMemory
from optimem.aging.policies import NoAging

from ..conftest import chat_turns

pytest.importorskip("torch")


def _backend(tiny, **kw):
    from optimem.backends.deepseek_ocr2 import DeepseekOcr2Backend

    model, processor = tiny
    return DeepseekOcr2Backend.from_model(model, processor, max_new_tokens=12, **kw)


@pytest.mark.slow
def test_pages_store_embeddings_and_recall_decodes_from_them(tiny_ocr2, tmp_path):
    backend = _backend(tiny_ocr2)
    mem = OpticalMemory(
        tmp_path / "m.db",
        backend=backend,
        decode="lazy",
        policy=NoAging(),
        keep_recent_turns=0,
        creation_mode="base",
    )
    s = mem.session("a")
    s.add_turns(chat_turns(12, words=40))
    s.compress(flush=True)
    pages = s.pages()
    assert pages and all(p.positions == 257 for p in pages)  # DeepSeek-OCR 2's Base: 1024 global view
    blobs = mem.store.page_blobs(pages[0].id)
    representation, fingerprint = blobs.representation, blobs.representation_backend
    assert representation and fingerprint == backend.fingerprint()
    first = s.recall_page(pages[0].id)
    assert not first.cached and first.backend == "deepseek-ocr2"
    again = s.recall_page(pages[0].id)
    assert again.cached and again.raw_text == first.raw_text  # read once, cached by fingerprint
    from optimem.backends.base import PageInput

    direct = backend.decode(
        PageInput(mem.decoder.page_input(mem.store.page_by_id(pages[0].id)).image, Mode.BASE)
    )
    assert direct.text == first.raw_text  # decoding the stored embeddings equals decoding pixels
    assert s.stats().positions == 257 * len(pages)


@pytest.mark.slow
def test_aging_reencodes_and_budget_counts_deepseek2_positions(tiny_ocr2, tmp_path):
    backend = _backend(tiny_ocr2)
    mem = OpticalMemory(
        tmp_path / "m.db",
        backend=backend,
        decode="lazy",
        policy="budget:200",
        keep_recent_turns=0,
        creation_mode="base",
    )
    s = mem.session("a")
    s.add_turns(chat_turns(12, words=40))
    result = s.compress(flush=True)
    # one Base page (257 + caption) is over 200; DeepSeek-OCR 2 sees Small and Tiny alike (145),
    # so the page steps down to Small and not further
    (aged,) = s.pages()
    assert result.aged == [(aged.id, Mode.BASE, Mode.SMALL)]
    assert aged.mode is Mode.SMALL and aged.positions == 145
    from optimem.backends import embeddings as emb

    blob = mem.store.page_blobs(aged.id).representation
    assert emb.unpack(blob, fingerprint=backend.fingerprint()).tensors["image"].shape[0] == 145
    assert result.tokens_after == s.stats().context_tokens
