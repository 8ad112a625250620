"""The README is a front door: short, the two set-up commands, examples named as they run."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETUP = [
    "bash scripts/install.sh && .venv/bin/optimem demo",
    "bash scripts/test.sh",
]


def test_it_reads_in_five_minutes():
    assert len(README.splitlines()) <= 250


def test_it_holds_exactly_the_two_set_up_commands():
    block = re.search(r"## Set up\n.*?```bash\n(?P<code>.*?)```", README, re.S)
    assert block, "README needs a '## Set up' section with one bash block"
    commands = [line.split("#")[0].strip() for line in block.group("code").splitlines() if line.strip()]
    assert commands == SETUP


def test_examples_are_named_with_the_project_interpreter_and_exist():
    named = re.findall(r"(?:\.venv/bin/python|bash) (examples/\S+)", README)
    assert {"examples/langchain_agent.py", "examples/rest_client.py", "examples/rest_client.sh"} <= set(named)
    for path in named:
        assert (ROOT / path).is_file(), path
    assert not re.search(r"(?m)^(?:\$ )?python3? examples/", README), "name the interpreter: .venv/bin/python"


def test_every_example_runs_in_the_suite():
    tests = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    for example in (ROOT / "examples").iterdir():
        assert f'"{example.name}"' in tests or f"examples/{example.name}" in tests, (
            f"no test runs {example.name}"
        )


def test_install_takes_the_extras_the_examples_need():
    install = (ROOT / "scripts" / "install.sh").read_text(encoding="utf-8")
    assert 'extras="${1:-}"' in install and "[${all}]" in install  # a comma list, passed to pip as extras
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    server = re.search(r"^server = \[(.*?)\]$", pyproject, re.M | re.S)
    assert server and "httpx" in server.group(1)  # examples/rest_client.py
    assert "bash scripts/install.sh langchain,server" in README


def test_links_point_at_files_that_exist():
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), target


def test_the_headline_table_leaves_the_reading_speed_row_to_fill():
    assert re.search(r"(?m)^\| reading speed \|", README)
