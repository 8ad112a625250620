"""Tiny chats and one shared test-double benchmark run for the bench tests."""

from __future__ import annotations

import random

import pytest

from optimem.bench import runner
from optimem.bench.datasets import Chat, ChatTurn, Question
from optimem.modes import Mode

from ..conftest import SHARED_CACHE

VOCAB = (
    "migration replica database cutover schedule budget weekend owner latency index table "
    "backup restore warehouse cluster region invoice review birthday dinner flight hotel "
    "colleague meeting Thursday Friday morning evening"
)
WORDS = VOCAB.split()


def tiny_chat(turns: int = 30, words: int = 90, name: str = "tiny") -> Chat:
    """Prose turns, each holding one exact code that a question asks for."""
    rng = random.Random(11)
    out = []
    for i in range(turns):
        body = " ".join(rng.choice(WORDS) for _ in range(words))
        out.append(
            ChatTurn(
                f"t{i}",
                "user" if i % 2 == 0 else "assistant",
                f"The code for item {i} is ZX-{1000 + i}. {body}",
            )
        )
    questions = [
        Question(f"Code of item {i}?", f"ZX-{1000 + i}", (f"t{i}",), "identifier") for i in range(turns)
    ]
    questions.append(Question("Where is the party?", "the moon base", ("t3",), "fact"))  # not in the text
    questions.append(Question("Adversarial", "", ("t4",), "adversarial", answerable=False))
    return Chat(name, f"test:{name}", "plain", tuple(out), tuple(questions))


def config(**kw) -> runner.BenchConfig:
    base = dict(
        backend="test-double",
        allow_test_double=True,
        budget_tokens=450,
        modes=(Mode.SMALL, Mode.TINY),
        pages_per_mode=2,
        creation_mode=Mode.SMALL,
        keep_recent_turns=2,
        progress=False,
        jobs=1,  # one process: the read-ahead's own tests say otherwise
    )
    base.update(kw)
    return runner.BenchConfig(**base)


@pytest.fixture(scope="session")
def bench_doc(tmp_path_factory):
    """One test-double run over two tiny chats, shared by the bench tests (read only: a test
    that changes it works on a deep copy)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPTIMEM_CACHE_DIR", str(SHARED_CACHE))
        return runner.run([tiny_chat(), tiny_chat(18, 60, "tinier")], config())


@pytest.fixture
def reads(monkeypatch):
    """The modes the test double was asked to read in this process, in order (worker
    processes of the read-ahead read theirs elsewhere)."""
    from optimem.backends.testing import TestDoubleBackend

    seen = []
    original = TestDoubleBackend.decode

    def counted(self, page):
        seen.append(page.mode)
        return original(self, page)

    monkeypatch.setattr(TestDoubleBackend, "decode", counted)
    return seen
