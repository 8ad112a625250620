"""The replay's figures are consistent with each other (through the test double)."""

from __future__ import annotations

import pytest

from optimem.backends import get_backend
from optimem.bench import report, runner
from optimem.errors import InputError
from optimem.modes import Mode

from .conftest import config, tiny_chat


def test_test_double_is_refused_without_the_flag():
    with pytest.raises(InputError, match="allow-test-double"):
        runner.run([tiny_chat(4)], config(allow_test_double=False))


def test_test_double_output_is_marked(bench_doc):
    assert bench_doc["decoder"] == {
        "name": "test-double",
        "label": "test-double+proofread",
        "fingerprint": "test-double+proofread1",
        "test_double": True,
    }
    assert any("NOT measurements" in w for w in bench_doc["warnings"])


def test_savings_is_text_over_seen(bench_doc):
    for chat in bench_doc["chats"]:
        text = chat["text_tokens"]["o200k_base"]
        o = chat["optimem"]
        assert o["pages"] > 0, "the tiny chat must make pages"
        assert o["seen_tokens"] == o["unpaged_tokens"] + o["page_tokens"]  # images + captions
        assert o["positions"] < o["page_tokens"]
        assert o["savings"] == pytest.approx(text / o["seen_tokens"], abs=1e-4)
        assert o["series"][-1] == o["seen_tokens"]
        assert len(o["series"]) == chat["turns"]
        assert o["consumers"]["deepseek-ocr"]["seen_tokens"] == o["seen_tokens"]
        for c in o["consumers"].values():
            assert c["savings"] == pytest.approx(text / c["seen_tokens"], abs=1e-4)
        w = chat["baselines"]["sliding_window"]
        assert w["seen_tokens"] <= bench_doc["config"]["budget_tokens"]
        assert w["savings"] == pytest.approx(text / w["seen_tokens"], abs=1e-4)
        assert chat["baselines"]["full_history"]["series"][-1] == text
        for r in chat["modes"].values():
            assert r["savings"] == pytest.approx(text / r["seen_tokens"], abs=1e-4)
            assert r["compression"] == pytest.approx(r["text_tokens"] / r["positions"], abs=1e-4)


def test_fidelity_is_within_0_and_1_and_names_its_decoder(bench_doc):
    seen = {"fidelity objects": 0, "fidelity figures": 0}

    def walk(node):
        if isinstance(node, dict):
            if "decoder" in node and "mean" in node:
                seen["fidelity objects"] += 1
                assert node["decoder"] == "test-double"
                for k in ("mean", "min", "mean_with_verbatim"):
                    assert node[k] is None or 0.0 <= node[k] <= 1.0
            for k, v in node.items():
                if k.startswith("fidelity") and isinstance(v, float):
                    seen["fidelity figures"] += 1
                    assert 0.0 <= v <= 1.0
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(bench_doc)
    # the budget run, every fixed mode and the pooled figures each hold one: the walk found them
    assert seen["fidelity objects"] >= 1 + len(bench_doc["chats"][0]["modes"]), seen


def test_sliding_window_loses_answers_in_dropped_turns_and_archive_keeps_all(bench_doc):
    chat = bench_doc["chats"][0]
    w = chat["baselines"]["sliding_window"]
    assert w["turns_dropped"] > 0
    kept_from = chat["turns"] - w["turns_kept"]
    for a in chat["answers"]:
        if not a["in_source"]:
            continue
        turn = int(a["evidence"][0][1:])
        assert a["sliding_window"] is (turn >= kept_from)
        assert a["archive"] is True and a["full_history"] is True
    assert w["answer_survival"]["survived"] == sum(
        1 for a in chat["answers"] if a["in_source"] and int(a["evidence"][0][1:]) >= kept_from
    )
    assert chat["baselines"]["archive"]["answer_survival"]["share"] == 1.0
    assert chat["baselines"]["full_history"]["answer_survival"]["share"] == 1.0
    # the question whose answer is not in its evidence is left out of every denominator
    assert chat["questions"] == {"total": 32, "answerable": 31, "in_source": 30}
    assert chat["baselines"]["archive"]["answer_survival"]["eligible"] == 30


def test_budget_run_reads_every_page_and_ages_them(bench_doc):
    chat = bench_doc["chats"][0]
    o = chat["optimem"]
    assert o["fidelity"]["pages"] == o["pages"] == len(o["page_rows"])
    assert o["answer_survival"]["not_measured"] == 0
    creation = bench_doc["config"]["creation_mode"]
    modes = {r["mode"] for r in o["page_rows"]}
    assert modes - {creation}, "the budget must age some page below its creation mode"
    assert sum(b["pages"] for b in o["by_age"]) == o["pages"]
    assert sum(v["pages"] for v in o["by_mode"].values()) == o["pages"]


def test_fixed_modes_decode_a_sample(bench_doc):
    for chat in bench_doc["chats"]:
        for name, r in chat["modes"].items():
            assert r["positions"] == r["pages"] * Mode(name).positions
            assert r["pages_decoded"] == min(2, r["pages"])
            s = r["answer_survival"]
            assert s["eligible"] + s["not_measured"] == chat["questions"]["in_source"]


def test_overall_pools_the_chats(bench_doc):
    ov = bench_doc["overall"]
    chats = bench_doc["chats"]
    assert ov["text_tokens"] == sum(c["text_tokens"]["o200k_base"] for c in chats)
    assert ov["optimem"]["seen_tokens"] == sum(c["optimem"]["seen_tokens"] for c in chats)
    assert ov["optimem"]["savings"] == pytest.approx(
        ov["text_tokens"] / ov["optimem"]["seen_tokens"], abs=1e-4
    )
    assert ov["baselines"]["archive"]["answer_survival"]["share"] == 1.0


def test_sample_pages_spreads_evenly():
    pages = list(range(10))
    assert runner.sample_pages(pages, 3) == [0, 4, 9]  # round(4.5) == 4
    assert runner.sample_pages(pages, 0) == pages
    assert runner.sample_pages(pages, 1) == [5]
    assert runner.sample_pages(pages, 20) == pages


@pytest.mark.slow
def test_end_to_end_through_the_cpu_ocr_gives_real_figures():
    """The default `cpu` decoder (tesseract + rapidocr) on a 14-turn chat of exact codes.

    Measured on the dev machine: fidelity 99.5%, raw OCR keeps 9 of 14 codes and the side
    channel brings back all 14, savings 4.2x, every answer exact (a sliding window: 4 of 14).
    """
    get_backend("cpu")  # the real engines are installed by scripts/install.sh: no skip
    doc = runner.run(
        [tiny_chat(14, 70)],
        config(
            backend="cpu",
            allow_test_double=False,
            modes=(Mode.TINY,),
            pages_per_mode=1,
            target_savings=(3,),
            jobs=2,  # pages read by the engines in two worker processes
        ),
    )
    assert doc["decoder"]["name"] == "cpu" and not doc["decoder"]["test_double"]
    assert doc["config"]["read_ahead_processes"] == 2
    assert report.validate(doc) == []  # the strict runs' part of the schema too
    chat = doc["chats"][0]
    o = chat["optimem"]
    assert o["pages"] >= 1 and o["fidelity"]["mean"] >= 0.97
    assert 3.5 <= o["savings"] <= 5.0
    ids = o["identifiers"]
    assert ids["total"] >= 14 and ids["share_with_verbatim"] >= 0.95
    assert ids["exact_with_verbatim"] >= ids["exact_ocr"]
    assert o["answer_survival"]["share"] >= 0.9
    assert chat["baselines"]["sliding_window"]["answer_survival"]["share"] <= 0.5
    assert o["timing"]["decoder_chars_per_s"] > 300
    (strict,) = chat["targets"]
    assert strict["eligible"] == 14 and strict["survival"]["exact"]["share"] >= 0.9
    assert strict["survival"]["window"]["share"] <= 0.5
    assert 0 < strict["side_channel"]["share"] <= 0.10
