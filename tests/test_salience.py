"""Page salience: side-channel strings and names as a share of the page's characters."""

import pytest

from optimem.aging.salience import name_chars, salience
from optimem.layout import VerbatimItem
from optimem.pages.verbatim import extract


def test_names_inside_sentences_count_and_sentence_openers_do_not():
    assert name_chars("We hiked near Banff with Sara Bareilles.") == len("Banff") + len("SaraBareilles")
    assert name_chars("Yesterday was long. Today too.") == 0  # capitals that open sentences
    assert name_chars("Then Melanie called.") == len("Melanie")  # "Then" opens it, Melanie counts
    assert name_chars("Hey, I met Caroline") == len("Caroline")
    assert name_chars("Oh well. Hi Mel") == len("Mel")  # "Hi" is no name, the word after it is


def test_salience_counts_side_channel_strings_once():
    text = "Ticket OPS-4821 is on db-replica-03 since 2024-05-01, ask Priya."
    items = extract(text)
    kept = sum(len(v.value) for v in items)
    assert salience(text, items, len(text)) == pytest.approx((kept + len("Priya")) / len(text))
    # a name inside a kept string is not counted again
    assert salience(text, [*items, VerbatimItem("word", "Priya", 0, 59)], len(text)) == pytest.approx(
        (kept + len("Priya")) / len(text)
    )


def test_small_talk_scores_below_a_page_of_names_and_numbers():
    chat = "that sounds really fun, i am so happy for you and hope you have a great time"
    facts = "Caroline moved to Austin on 12 May and paid $1,250 for the K-200A camera from Nikon."
    assert salience(chat, extract(chat), len(chat)) == 0.0
    assert salience(facts, extract(facts), len(facts)) > 0.3


def test_salience_without_text_uses_the_side_channel_alone_and_is_capped():
    items = [VerbatimItem("identifier", "OPS-4821", 1, 0)]
    assert salience(None, items, 80) == pytest.approx(8 / 80)
    assert salience(None, items, 4) == 1.0
    assert salience("anything", items, 0) == 0.0
