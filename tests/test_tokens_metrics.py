import pytest

from optimem import InputError
from optimem.reading.fidelity import edit_distance, fidelity, normalise
from optimem.tokens import count_tokens


def test_counts_offline_with_both_encodings():
    assert count_tokens("hello world") == 2
    assert count_tokens("hello world", "cl100k_base") == 2
    assert count_tokens("") == 0
    # o200k packs Chinese tighter than cl100k
    zh = "我们明天在成都见面，然后去吃火锅。"
    assert count_tokens(zh) < count_tokens(zh, "cl100k_base")


def test_special_tokens_are_counted_as_text():
    assert count_tokens("<|endoftext|>") > 1


def test_unknown_encoding():
    with pytest.raises(InputError, match="unknown encoding"):
        count_tokens("x", "gpt2")


def test_fidelity_by_hand():
    assert normalise("  a \n b\t c ") == "a b c"
    assert edit_distance("kitten", "sitting") == 3
    assert fidelity("hello world", "hello world") == 1.0
    assert fidelity("helo world", "hello world") == pytest.approx(1 - 1 / 11)
    assert fidelity("hello\n  world", "hello world") == 1.0
    assert fidelity("", "abcd") == 0.0
    assert fidelity("something much longer than the source", "ab") == 0.0
    assert fidelity("", "") == 1.0
    assert fidelity("x", "") == 0.0
