"""The one cost authority: provider image-token rules, captions, and Pricing."""

from __future__ import annotations

import pytest

from optimem import InputError
from optimem.aging import pricing as m
from optimem.backends import get_backend
from optimem.modes import Mode


def test_openai_tiles_match_the_documented_examples():
    assert m.openai_tile_tokens(1024, 1024) == 765  # → 768², 4 tiles
    assert m.openai_tile_tokens(2048, 4096) == 1105  # → 1024×2048 → 768×1536, 6 tiles
    assert m.openai_tile_tokens(512, 512) == 255  # not enlarged: one tile
    assert m.openai_tile_tokens(1280, 1280) == 765


def test_openai_patches_match_the_documented_examples():
    assert m.openai_patch_tokens(1024, 1024) == 1024
    assert m.openai_patch_tokens(1800, 2400) == 1452
    assert m.openai_patch_tokens(512, 512) == 256


def test_anthropic_area_rule():
    assert m.anthropic_tokens(1000, 1000) == 1334  # docs: 1000×1000 ≈ 1,334 tokens
    assert m.anthropic_tokens(512, 512) == 350  # 262,144 / 750 = 349.5
    assert m.anthropic_tokens(1280, 1280) == 1599  # scaled to 1095² (≤ ~1,600 tokens)


def test_gemini_tiles():
    assert m.gemini_tokens(384, 384) == 258
    assert m.gemini_tokens(512, 512) == 258
    assert m.gemini_tokens(1280, 1280) == 4 * 258


def test_qwen_smart_resize():
    assert m.qwen25_vl_tokens(512, 512) == 18 * 18  # 512 → 504
    assert m.qwen25_vl_tokens(1280, 1280) == 46 * 46  # 1280 → 1288
    assert m.qwen25_vl_tokens(20, 20) == 4  # raised to min_pixels: 56×56


def test_page_tokens_per_consumer():
    assert m.page_tokens("deepseek-ocr", Mode.TINY) == 73
    assert m.page_tokens("deepseek-ocr", Mode.GUNDAM) == 693
    assert m.page_tokens("deepseek-ocr", Mode.LARGE) == 421
    assert m.page_tokens("openai-tiles", Mode.SMALL) == 765  # 640 → 2×2 tiles
    assert set(m.CONSUMERS) == {
        "deepseek-ocr",
        "openai-tiles",
        "openai-patches",
        "anthropic",
        "gemini",
        "qwen2.5-vl",
    }
    for c in m.CONSUMERS.values():
        assert c.source and c.rule


def test_pricing_uses_the_backends_positions_unless_a_consumer_is_named():
    backend = get_backend("test-double")
    p = m.Pricing(backend)
    assert p.image(Mode.SMALL) == 111 and p.image(Mode.TINY) == 73
    assert m.Pricing(backend, consumer="gemini").image(Mode.TINY) == 258
    with pytest.raises(InputError, match="unknown consumer"):
        m.Pricing(backend, consumer="gpt-17")


def test_caption_costs_the_same_at_every_mode():
    class P:
        id = 523
        number = 12
        turn_ids = (301, 322)
        last_turn_seq = 42
        mode = Mode.GUNDAM

    p = m.Pricing(get_backend("test-double"))
    assert m.page_caption(P) == "[memory page 12 (id 523): turns 41-42]"
    assert p.page(P) == 693 + p.caption(P)
    assert p.page(P, Mode.TINY) == 73 + p.caption(P)
