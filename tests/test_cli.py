import json

import click
import pytest
from click.testing import CliRunner

from optimem.cli.main import main


def test_every_command_has_help():
    runner = CliRunner()
    assert runner.invoke(main, ["-h"]).exit_code == 0
    for name, command in main.commands.items():
        assert command.help, f"optimem {name} has no help text"
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and "optimem" in result.output


def test_compress_recall_stats_through_tesseract(tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(
        json.dumps(
            {
                "turns": [
                    {
                        "role": "user",
                        "content": "Please remember ticket OPS-7731 for the Chengdu trip budget.",
                    },
                    {
                        "role": "assistant",
                        "content": "Noted: OPS-7731, budget 4,200 EUR, flights on 21 April.",
                    },
                ]
            }
        )
    )
    db = str(tmp_path / "m.db")
    runner = CliRunner()
    out = runner.invoke(main, ["compress", str(chat), "--db", db, "--session", "trip"])
    assert out.exit_code == 0, out.output
    assert "1 pages created" in out.output
    out = runner.invoke(main, ["recall", "1", "--db", db, "--session", "trip"])
    assert out.exit_code == 0 and "OPS-7731" in out.output
    out = runner.invoke(
        main, ["recall", "--query", "Chengdu budget", "--db", db, "--session", "trip", "--json"]
    )
    assert out.exit_code == 0 and json.loads(out.output)[0]["page_id"] == 1
    out = runner.invoke(main, ["stats", "--db", db, "--session", "trip", "--json"])
    assert json.loads(out.output)["turns"] == 2
    png = tmp_path / "p.png"
    out = runner.invoke(main, ["page", "1", "-o", str(png), "--db", db, "--session", "trip"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _chat(tmp_path, n: int = 10):
    chat = tmp_path / "chat.json"
    turns = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": f"{i}. The cutover ticket is OPS-{4800 + i}.",
        }
        for i in range(n)
    ]
    chat.write_text(json.dumps({"turns": turns}))
    return chat


def test_library_errors_become_one_clean_line(tmp_path):
    db = str(tmp_path / "m.db")
    assert (
        CliRunner()
        .invoke(main, ["compress", str(_chat(tmp_path)), "--db", db, "-b", "test-double"])
        .exit_code
        == 0
    )
    out = CliRunner().invoke(main, ["recall", "99", "--db", db])
    assert out.exit_code == 1
    assert out.output.strip() == "Error: no page 99 in session 'default'"
    out = CliRunner().invoke(main, ["stats", "--db", db, "--session", "ghost"])
    assert out.exit_code == 1 and "no session 'ghost'" in out.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    out = CliRunner().invoke(main, ["compress", str(bad), "--db", db])
    assert out.exit_code == 1 and "cannot read chat file" in out.output
    assert isinstance(main, click.Group)


def test_compress_takes_the_salient_policy_string(tmp_path):
    from .conftest import chat_turns

    facts = [
        {"role": "user", "content": f"Caroline paid ${1200 + i} for ticket OPS-{4800 + i} on 2024-05-{i + 10:02d} "
         f"in Banff with Melanie, Priya and Dario; host db-{i:02d}.eu-west, build v1.{i}.3."}
        for i in range(14)
    ]  # fmt: skip
    talk = [{"role": r, "content": c} for r, c in chat_turns(46)]
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps({"turns": facts + talk}))
    runner = CliRunner()

    def compress(policy: str) -> list[str]:
        db = str(tmp_path / f"{policy.replace(':', '-')}.db")
        out = runner.invoke(
            main,
            [
                "compress",
                str(chat),
                "--db",
                db,
                "-b",
                "test-double",
                "--policy",
                policy,
                "--keep-recent",
                "2",
                "--no-flush",
            ],
        )
        assert out.exit_code == 0, out.output
        stats = json.loads(runner.invoke(main, ["stats", "--db", db, "-b", "test-double", "--json"]).output)
        modes = [
            line.split()[2] for line in out.output.splitlines() if line.split()[0].isdigit()
        ]  # page, id, mode
        return [str(stats["context_tokens"]), *modes]

    full, *modes = compress("none")
    assert modes == ["small"] * 3
    budget = int(full) - 20
    assert compress(f"budget:{budget}")[1:] == ["tiny", "small", "small"]
    assert compress(f"budget:{budget}:salient")[1:] == ["small", "tiny", "small"]
    out = runner.invoke(
        main, ["compress", str(chat), "--db", str(tmp_path / "x.db"), "--policy", "budget:9:loud"]
    )
    assert out.exit_code == 1 and "unknown budget option" in out.output


def test_recall_without_arguments_says_what_to_give(tmp_path):
    out = CliRunner().invoke(main, ["recall", "--db", str(tmp_path / "m.db")])
    assert out.exit_code == 2
    assert "say what to recall: a PAGE_ID" in out.output and "--query" in out.output
    out = CliRunner().invoke(main, ["recall", "3", "-q", "x", "--db", str(tmp_path / "m.db")])
    assert out.exit_code == 2 and "not both" in out.output


def test_reading_commands_never_create_a_database(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPTIMEM_DB")
    for args in (["stats"], ["recall", "1"], ["page", "1", "-o", "p.png"]):
        out = CliRunner().invoke(main, args)
        assert out.exit_code == 1, (args, out.output)
        assert "no database at optimem.db" in out.output
    assert list(tmp_path.iterdir()) == []


def test_keep_recent_keeps_turns_as_text_and_flush_pages_all(tmp_path):
    chat = _chat(tmp_path, 20)
    runner = CliRunner()

    def unpaged(*options: str) -> int:
        db = str(tmp_path / f"{len(options)}{'-'.join(options)}.db")
        out = runner.invoke(main, ["compress", str(chat), "--db", db, "-b", "test-double", *options])
        assert out.exit_code == 0, out.output
        if "0 pages created" not in out.output:  # progress while OCR runs
            assert "pages with test-double (OCR" in out.output
        stats = json.loads(runner.invoke(main, ["stats", "--db", db, "-b", "test-double", "--json"]).output)
        return stats["unpaged_tokens"]

    assert unpaged() == 0  # the default pages every turn
    assert unpaged("--keep-recent", "4") > 0  # --keep-recent implies --no-flush
    assert unpaged("--keep-recent", "4", "--flush") == 0


def test_page_takes_a_backend(tmp_path):
    db = str(tmp_path / "m.db")
    assert (
        CliRunner()
        .invoke(main, ["compress", str(_chat(tmp_path)), "--db", db, "-b", "test-double"])
        .exit_code
        == 0
    )
    png = tmp_path / "p.png"
    out = CliRunner().invoke(main, ["page", "1", "-o", str(png), "--db", db, "--backend", "test-double"])
    assert out.exit_code == 0, out.output
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow  # fresh interpreters with an extra hidden
def test_a_command_whose_extra_is_missing_names_it(tmp_path):
    # `serve` is listed and fails in one line naming its extra, never vanishes from --help
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['pydantic_settings'] = None\n"  # as if the server extra were absent
        "from optimem.cli import main\n"
        "sys.argv = ['optimem'] + sys.argv[1:]\n"
        "main()\n"
    )
    listed = subprocess.run([sys.executable, "-c", script, "--help"], capture_output=True, text=True)
    assert "serve" in listed.stdout and "optimem[server]" in listed.stdout
    run = subprocess.run(
        [sys.executable, "-c", script, "serve"], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 1
    assert "`optimem serve` needs the server extra: pip install 'optimem[server]'" in run.stderr
