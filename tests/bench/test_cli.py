"""`optimem bench` and `optimem demo` through click."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from optimem.bench import report
from optimem.cli.bench import bench_command, demo_command

from .conftest import tiny_chat

FAST = ["--modes", "tiny", "--pages-per-mode", "1", "--creation-mode", "small", "--keep-recent", "2",
        "--budget", "800", "--no-progress"]  # fmt: skip


def _chat_file(tmp_path):
    chat = tiny_chat(16, 60)
    path = tmp_path / "chat.json"
    path.write_text(json.dumps({"turns": [{"role": t.role, "content": t.content} for t in chat.turns]}))
    return path


def test_bench_refuses_the_test_double_without_the_flag(tmp_path):
    result = CliRunner().invoke(bench_command, [str(_chat_file(tmp_path)), "-b", "test-double", *FAST])
    assert result.exit_code == 1
    assert "allow-test-double" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_bench_writes_everything(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        bench_command,
        [str(_chat_file(tmp_path)), "-b", "test-double", "--allow-test-double", "--out", str(out), *FAST],
    )
    assert result.exit_code == 0, result.output
    assert report.BANNER in result.output
    assert "sliding window (800)" in result.output
    for name in ("bench.json", "bench.md", *report.PLOTS.values()):
        assert (out / name).is_file(), name
    doc = json.loads((out / "bench.json").read_text())
    assert report.validate(doc) == []
    assert doc["chats"][0]["format"] == "plain"


@pytest.mark.slow
def test_bench_json_to_stdout(tmp_path):
    result = CliRunner().invoke(
        bench_command,
        [str(_chat_file(tmp_path)), "-b", "test-double", "--allow-test-double", "--json", "-", *FAST],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["decoder"]["test_double"] is True


def test_bench_bad_input_is_one_clean_line(tmp_path):
    result = CliRunner().invoke(bench_command, [str(tmp_path / "nope.json"), "-b", "test-double"])
    assert result.exit_code == 1 and "no such chat file" in result.output
    result = CliRunner().invoke(
        bench_command, ["--modes", "huge", "-b", "test-double", "--allow-test-double"]
    )
    assert result.exit_code == 1 and "unknown mode 'huge'" in result.output


@pytest.mark.slow
def test_demo_runs_the_default_chat(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        demo_command,
        ["-b", "test-double", "--allow-test-double", "--limit-turns", "14", "--out", str(out), *FAST],
    )
    assert result.exit_code == 0, result.output
    assert "default_chat" in result.output
    doc = json.loads((out / "bench.json").read_text())
    assert doc["chats"][0]["name"] == "default_chat" and doc["chats"][0]["turns"] == 14


def test_commands_have_help():
    for cmd in (bench_command, demo_command):
        result = CliRunner().invoke(cmd, ["--help"])
        assert result.exit_code == 0 and cmd.help
        assert "--allow-test-double" in result.output
