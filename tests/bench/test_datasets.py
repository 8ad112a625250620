"""Loaders: LoCoMo, plain chat JSON and the embedded default chat."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optimem.bench import datasets
from optimem.errors import InputError

#: The LoCoMo sample beside the checkout (`../shared/data/locomo`), where the project keeps it.
LOCOMO_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "locomo"

LOCOMO_MINI = {
    "speaker_a": "Caroline",
    "speaker_b": "Melanie",
    "session_1_date_time": "1:56 pm on 8 May, 2023",
    "session_1": [
        {"speaker": "Caroline", "dia_id": "D1:1", "text": "Hey Mel! I went to a support group."},
        {"speaker": "Melanie", "dia_id": "D1:2", "text": "Great!", "blip_caption": "a photo of a lake"},
        {"speaker": "Caroline", "dia_id": "D1:3", "text": "   "},
    ],
    "session_2_date_time": "10:37 am on 27 June, 2023",
    "session_2": [{"speaker": "Melanie", "dia_id": "D2:1", "text": "I painted a sunrise in 2022."}],
    "events_session_1": [],
    "session_1_summary": "ignored",
    "qa": [
        {"question": "When?", "answer": 2022, "evidence": ["D2:1"], "category": 2},
        {"question": "Two ids", "answer": "lake", "evidence": ["D1:2; D1:1"], "category": 1},
        {"question": "Nope", "adversarial_answer": "x", "evidence": ["D1:1"], "category": 5},
        {"question": "Bad id", "answer": "y", "evidence": ["D"], "category": 4},
    ],
}


def test_locomo_loader_maps_speakers_captions_times_and_questions(tmp_path):
    path = tmp_path / "mini.json"
    path.write_text(json.dumps(LOCOMO_MINI))
    chat = datasets.load(path)
    assert chat.format == "locomo"
    assert [t.id for t in chat.turns] == ["D1:1", "D1:2", "D2:1"]
    assert chat.skipped_turns == 1  # the blank turn
    assert [t.role for t in chat.turns] == ["user", "assistant", "assistant"]
    assert chat.turns[0].name == "Caroline"
    assert chat.turns[1].content == "Great! [shares a photo of a lake]"
    assert chat.turns[0].created_at.isoformat() == "2023-05-08T13:56:00+00:00"
    q = chat.questions
    assert q[0].answer == "2022" and q[0].category == "temporal" and q[0].answerable
    assert q[1].evidence == ("D1:2", "D1:1")
    assert not q[2].answerable  # adversarial
    assert not q[3].answerable  # evidence id that names no turn


@pytest.mark.skipif(
    not LOCOMO_DIR.exists(), reason="LoCoMo sample not present (../shared/data/locomo beside the checkout)"
)
def test_real_locomo_files_load_with_the_readme_turn_counts():
    counts = {"26": 419, "30": 369, "41": 663, "42": 629, "43": 680}
    for stem, n in counts.items():
        chat = datasets.load(LOCOMO_DIR / f"{stem}.json")
        assert len(chat.turns) + chat.skipped_turns == n
        assert sum(q.answerable for q in chat.questions) > 50


def test_plain_chat_formats(tmp_path):
    for raw in (
        {"turns": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    ):
        path = tmp_path / "c.json"
        path.write_text(json.dumps(raw))
        chat = datasets.load(path)
        assert chat.format == "plain" and [t.id for t in chat.turns] == ["t1", "t2"]
        assert chat.questions == ()
    # the same rules as the CLI's loader: whitespace-only turns are skipped and counted
    path.write_text(
        json.dumps({"turns": [{"role": "user", "content": " "}, {"role": "user", "content": "x"}]})
    )
    assert datasets.load(path).skipped_turns == 1


def test_bad_files_say_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="no such chat file"):
        datasets.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        datasets.load(bad)
    bad.write_text(json.dumps({"turns": [{"role": "robot", "content": "x"}]}))
    with pytest.raises(InputError, match="role 'robot'"):
        datasets.load(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(InputError, match="unknown chat format"):
        datasets.load(bad)


def test_default_chat_and_limit():
    chat = datasets.load("default")
    assert chat.format == "optimem" and len(chat.turns) == 105
    ids = {t.id for t in chat.turns}
    assert len(chat.questions) == 55
    assert all(set(q.evidence) <= ids and q.answerable for q in chat.questions)
    short = chat.limit(20)
    assert len(short.turns) == 20 and short.meta["limited_to"] == 20
    kept = {t.id for t in short.turns}
    assert all(set(q.evidence) <= kept for q in short.questions)
    assert 0 < len(short.questions) < len(chat.questions)


def test_load_many_reads_folders(tmp_path):
    for i in range(2):
        (tmp_path / f"{i}.json").write_text(json.dumps({"turns": [{"role": "user", "content": f"m{i}"}]}))
    chats = datasets.load_many([str(tmp_path), "default"])
    assert [c.name for c in chats] == ["0", "1", "default_chat"]
    assert datasets.load_many([])[0].name == "default_chat"
