"""The identifier exactness benchmark's judging rules, and the corpus it runs on."""

from __future__ import annotations

import json

from benchmarks import identifier_exactness as ie
from benchmarks import make_identifier_corpus as mk


def test_exact_on_a_verified_line():
    assert ie.classify("INC-7003", "see INC-7003 now", ["user: see INC-7003 now"], True) == "exact"


def test_a_near_duplicate_on_a_verified_line_is_wrong():
    url = "https://grafana.example.com/d/pay-10"
    assert ie.classify(url, f"at {url} ok", [f"at {url}10 ok"], True) == "wrong"
    assert ie.classify("FL-304", "on FL-304 today", ["on FL-204 today"], True) == "wrong"
    assert ie.classify("FL-304", "on FL-304 today", ["on FL-304A today"], True) == "wrong"


def test_a_miss_on_an_unverified_or_unflagged_line():
    assert ie.classify("Chloé", "Chloé said", ["Chloe said"], False) == "unverified"
    assert ie.classify("Chloé", "Chloé said", ["Chloe said"], None) == "unflagged"
    assert ie.classify("Chloé", "Chloé said", ["Chloé said"], False) == "exact"


def test_every_occurrence_must_come_back():
    source = "run #1001 then run #1001 again"
    assert ie.classify("#1001", source, ["run #1001 then run #1007 again"], True) == "wrong"
    assert ie.classify("#1001", source, [source], True) == "exact"


def test_an_identifier_wrapped_over_two_lines():
    url = "https://grafana.example.com/d/pay-12"
    assert ie.classify(url, url, ["https://grafana.exam", "ple.com/d/pay-12"], True) == "exact"
    assert ie.classify("José Álvarez", "José Álvarez", ["and José", "Álvarez"], True) == "exact"
    assert ie.classify(url, url, ["https://grafana.exam", "ple.com/d/pay-13"], True) == "wrong"


def test_flags_over_several_lines():
    assert ie.combine([True, True]) is True
    assert ie.combine([True, False]) is False
    assert ie.combine([True, None]) is None
    assert ie.combine([]) is None


def test_summary_counts_and_shares():
    occ = ie.Occurrence(0, 0, 6, "FL-304", "flight")
    judged = [(occ, "exact", True), (occ, "wrong", True), (occ, "unverified", False), (occ, "exact", False)]
    got = ie.summarise(judged)
    assert (got["occurrences"], got["exact"], got["wrong"], got["unverified"]) == (4, 2, 1, 1)
    assert got["shares"]["exact"] == 0.5
    assert got["exact_on_verified_lines"] == 0.5
    assert (got["on_unverified_lines"], got["exact_on_unverified_lines"]) == (2, 1)


def test_planted_identifiers_are_found_whole():
    turns = [
        {
            "content": "FL-304A and FL-304 on 2024-05-01, run #1000.",
            "ids": [{"family": "flight", "value": "FL-304"}, {"family": "flight", "value": "FL-304A"}],
        }
    ]
    found = [(o.value, o.kind) for o in ie.occurrences(turns)]
    assert found[:2] == [("FL-304A", "flight"), ("FL-304", "flight")]
    assert ("2024-05-01", "extract:identifier") in found


def test_the_corpus_is_committed_as_generated_and_big_enough():
    doc = json.loads(ie.CORPUS.read_text(encoding="utf-8"))
    assert doc == json.loads(json.dumps(mk.build(), ensure_ascii=False))
    turns = doc["turns"]
    assert 60 <= len(turns) <= 100
    occs = ie.occurrences(turns)
    assert len(occs) >= 300
    planted = {o.kind for o in occs if not o.kind.startswith("extract:")}
    assert {"ticket", "run", "dashboard", "version", "migration", "name", "flight"} <= planted
    for turn in turns:  # every planted identifier stands in its turn
        for item in turn["ids"]:
            assert item["value"] in turn["content"]


def test_a_miss_in_case_or_punctuation_only_keeps_its_words():
    assert ie.same_words("i-0c32f9525acc10a6c", ["Instance I-0c32f9525acc10a6c backs"])
    assert ie.same_words("https://grafana.example.com/d/pay-16", ["at https/grafana.example com/d/pay-16 ("])
    assert not ie.same_words(
        "https://grafana.example.com/d/pay-10", ["at https://grafana.example.com/d/pay-1010"]
    )
    assert not ie.same_words("FL-304", ["on FL-204 today"])
