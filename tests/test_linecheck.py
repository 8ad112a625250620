"""Line checks, the rare-word lexicon and the word corrector (real symspellpy dictionary)."""

from __future__ import annotations

import pytest

from optimem.aids import lexicon, linecheck
from optimem.aids.page_aids import ReadingAids, page_aids
from optimem.reading.correction import Corrector, Variant, _search


def test_check_sees_words_not_punctuation_case_or_spacing():
    assert linecheck.digest("Hey, Gina!  Good to see you.") == linecheck.digest("hey gina good to see you")
    assert linecheck.digest("near a park") != linecheck.digest("near park")
    assert linecheck.digest("K-200A") != linecheck.digest("K-2004")
    assert len(linecheck.digest("anything")) == linecheck.DIGEST_BYTES


def test_checks_pack_into_three_bytes_a_line():
    lines = ["Jon (user): Hey Gina!", "", "second line", "第三行 mixed"]
    packed = linecheck.pack(lines)
    assert len(packed) == linecheck.DIGEST_BYTES * len(lines)
    assert linecheck.unpack(packed) == [linecheck.digest(x) for x in lines]
    assert linecheck.verified("HEY gina", linecheck.digest("Hey, Gina!"))
    assert not linecheck.verified("Hey Gina", None)


def test_lexicon_keeps_unknown_words_once_in_order_and_respects_its_cap():
    text = "We drove to Zorblax with Bareilles, then Zorblax again; the car is fine. 2024 counts."
    assert lexicon.rare_words(text) == ["Zorblax", "Bareilles"]
    assert lexicon.rare_words(text, max_chars=9) == ["Zorblax"]
    assert lexicon.is_known("Piece") and lexicon.is_known("2024") and not lexicon.is_known("Bantt")


def test_page_aids_mark_a_truncated_lexicon():
    lines = ["Zorblax met Quindle and Vrask at Plimbo.", "Fine words only here."]
    kept = page_aids(lines, "\n".join(lines))
    aids = ReadingAids.from_kept(kept)
    assert aids.checks == tuple(linecheck.digest(x) for x in lines)
    # 5% of 62 characters holds no rare word: the lexicon says it is incomplete
    assert not kept.lexicon_complete and not aids.complete_lexicon
    long = ["Zorblax met Quindle. " + "The weather was fine and we walked home. " * 8]
    aids = ReadingAids.from_kept(page_aids(long, long[0]))
    assert aids.lexicon == ("Zorblax", "Quindle") and aids.complete_lexicon


def test_count_verified_counts_lines_against_their_checks():
    lines = ["one line", "two lines"]
    checks = linecheck.unpack(linecheck.pack(lines))
    assert linecheck.count_verified(lines, checks) == 2
    assert linecheck.count_verified(["one line", "too lines"], checks) == 1
    assert linecheck.count_verified(lines, []) is None and linecheck.count_verified(None, checks) is None
    assert linecheck.count_verified(lines[:1], checks) is None  # a check for each line, or none


@pytest.fixture(scope="module")
def corrector():
    return Corrector(["Banff", "Bareilles", "Gina"])


@pytest.mark.parametrize(
    ("reading", "truth", "label"),
    [
        ("Lost my job, so Tm gonna take a shot at startingmy own business.",
         "Lost my job, so I'm gonna take a shot at starting my own business.", None),
        ("We drove to Bantt and heard Brave by Sara Bareilies.",
         "We drove to Banff and heard Brave by Sara Bareilles.", None),
        ("Jon (userl Hey Oina! Thankst for the plece.",
         "Jon (user): Hey Gina! Thanks for the piece.", "Jon (user):"),
    ],
)  # fmt: skip
def test_corrections_that_pass_the_check_are_exact(corrector, reading, truth, label):
    fix = corrector.correct([reading], linecheck.digest(truth), label=label)
    assert fix.verified
    assert linecheck.line_words(fix.text) == linecheck.line_words(truth)


@pytest.mark.parametrize(
    ("reading", "truth", "length"),
    [
        # DejaVu Sans's capital I is a bare stroke; at 8 px "a" closes into "s", "=" or "5"
        ("So, | went to = fair and grest food. Art's been s way to heal",
         "So, I went to a fair and great food. Art's been a way to heal", None),
        ("Wow, Melanie, whats beautiful moment! t's 5 win", "Wow, Melanie, what a beautiful moment! It's a win", None),
        # a lost one-letter word, found because the layout says the line is longer
        ("Thanks for the support, it really means lot.", "Thanks for the support, it really means a lot.", 46),
    ],
)  # fmt: skip
def test_glyph_confusions_and_lost_letters_are_corrected_exactly(corrector, reading, truth, length):
    fix = corrector.correct([reading], linecheck.digest(truth), length=length)
    assert fix.verified
    assert linecheck.line_words(fix.text) == linecheck.line_words(truth)


def test_a_lost_word_is_only_looked_for_where_the_line_reads_short(corrector):
    truth = "Thanks for the support, it really means a lot."
    reading = "Thanks for the support, it really means lot."
    assert not corrector.correct([reading], linecheck.digest(truth), length=len(reading)).verified


def test_an_apostrophe_tail_is_not_taken_for_a_glyph(corrector):
    truth = "That's the one he's got"
    fix = corrector.correct([truth.replace("one", "onc")], linecheck.digest(truth))
    assert fix.verified and fix.text == truth


def test_a_reading_late_in_the_list_leads_a_search_of_its_own():
    """A re-read line has up to five readings; the last engine's may be the only one with the
    hash right, and it must lead a search, not only lend words to the others (readings of a
    line of the embedded chat on a Small page: the line model's, then tesseract's with the
    model's letters, tesseract's, rapidocr's)."""
    truth = (
        "3f9c2a1e7b04d58c9a61e2f0b7d3c85a94e1f6b2 in the infra-pg repository. Follow-ups: 1. "
        "Alert on pg_stat_archiver.failed_count increasing. 2. Alert on WAL"
    )
    readings = [
        "3f9c2a1 e7b04d58c9a61e2ROb73c85a94e1K6b2 in the infra-pg repository. Follow-ups: 1. "
        "Alert on pg_stat_archiver.failed_count increasing. 2. Alert on WAL",
        "3f9c2 a1 e7 b04d58c9a61e2ROb73c85a9 4e1K6 b2 in the infra-pg repository. Follow-ups: 1. "
        "Alert on pg_stat_archiver.failed_count increasing. 2. Alert on WAL",
        "349e2 al e7 bOADSBcS a6 Le2M b7d3cBS a9 4e1%6 b2 in the infra-pg repository. Follow-wps: "
        "1. Alert on pg_stat_archiver.failed_count increasing. 2. Mlerton WAL",
        "3f9c2a1e7b04d58c9a61e2f0b7d3c85a94e1f6b2 in the infra-pg repository. Follow-ups: 1. "
        "Alert on pg_stat_archiverfailed_count increasing. 2. Alert on WAL",
    ]
    aids = ReadingAids.from_kept(page_aids([truth], truth + " filler words" * 40), {})
    fix = Corrector(aids.lexicon).correct(readings, linecheck.digest(truth))
    assert fix.verified and linecheck.line_words(fix.text) == linecheck.line_words(truth)


def test_the_other_engines_reading_is_used_where_it_agrees(corrector):
    truth = "and it was nice to be reminded why I'm passionate"
    fix = corrector.correct(
        [
            "and it was mice to be reminded why Tm pessionate",
            "ond k was nice te be reminded why i'm passionate",
        ],
        linecheck.digest(truth),
    )
    assert fix.verified and linecheck.line_words(fix.text) == linecheck.line_words(truth)


def test_a_line_that_cannot_be_made_to_pass_is_not_claimed(corrector):
    fix = corrector.correct(["completely unrelated words here"], linecheck.digest("the true line was this"))
    assert not fix.verified
    # code and CJK lines are checked but never respelled
    code = corrector.correct(["x = fooo(1)"], linecheck.digest("x = foo(1)"), prose=False)
    assert code == type(code)("x = fooo(1)", False)


def _combinations(sizes):
    import itertools
    import random

    rng = random.Random(sum(sizes))
    # costs in 0.05 steps, like the corrector's, many of them tied; each list cheapest first
    options = [
        [
            Variant((f"w{k}v{i}",), f"w{k}v{i}", c)
            for i, c in enumerate(sorted(rng.randrange(0, 8) * 0.05 for _ in range(n)))
        ]
        for k, n in enumerate(sizes)
    ]
    choices = list(itertools.product(*(range(n) for n in sizes)))
    # what the search promises: total cost first (exactly, not as floats add up), then index order
    choices.sort(key=lambda c: (sum(round(options[k][i].cost * 100) for k, i in enumerate(c)), c))
    return options, choices


@pytest.mark.parametrize("sizes", [(3, 1, 4, 2), (1, 1, 5), (2, 2, 2, 2, 2), (1,), ()])
def test_the_search_tries_each_choice_once_cheapest_first_ties_in_index_order(sizes):
    options, choices = _combinations(sizes)
    for rank, choice in enumerate(choices):
        words = [w for k, i in enumerate(choice) for w in options[k][i].words]
        assert _search(options, linecheck.digest_words(words), limit=1000) == (choice, rank + 1)
    # a check nothing passes: every choice is tried once, then the search stops
    assert _search(options, b"\x00\x00\x00", limit=1000) == (None, len(choices))
    # a limit never cuts a tie: the choices that cost as much as the last one are tried too
    cost = [sum(round(options[k][i].cost * 100) for k, i in enumerate(c)) for c in choices]
    for limit in (1, 3, 5):
        tied = sum(c <= cost[limit - 1] for c in cost) if limit <= len(choices) else len(choices)
        assert _search(options, b"\x00\x00\x00", limit=limit) == (None, min(tied, 2 * limit))


def _page(lines):
    from PIL import Image

    from optimem.backends.base import PageInput
    from optimem.layout import LineBox
    from optimem.modes import Mode

    boxes = tuple(
        LineBox(0, 10 * i, 100, 10 * i + 9, text, 1, 0 if i == 0 else 1, 2) for i, text in enumerate(lines)
    )
    return PageInput(Image.new("L", (8, 8)), Mode.TINY, boxes, 6.4)


def test_proofread_rereads_only_the_lines_it_cannot_fix_alone():
    from optimem.backends.base import Decoded
    from optimem.reading.proofread import proofread

    truth = ["user: We drove to Zorblax.", "The weather was fine and we walked home.", "It was a long day."]
    aids = ReadingAids.from_kept(page_aids(truth, "\n".join(truth) + " filler words" * 40), {0: "user:"})
    # a dropped word cannot be put back from the reading alone: only that line is read again
    read = ["usersWe drove to Zorblex.", "The weather was fine and we walked home.", "It long day."]
    asked = []

    def reread(idx, texts):
        asked.append((idx, texts))
        return {2: ["It wes a long dey."]}

    page = _page(truth)
    fixed = proofread(page, Decoded("\n".join(read), 0.5, "x", lines=tuple(read)), aids, reread=reread)
    assert asked == [([2], ["It long day."])]  # line 0 was fixed alone, line 1 was right
    assert fixed.verified == fixed.checked == 3
    assert fixed.lines[0] == "user: We drove to Zorblax." and fixed.lines[2] == "It was a long day."
    # without reading aids nothing is proofread
    assert proofread(page, Decoded("", 0.5, "x", lines=tuple(read)), ReadingAids()) is None
