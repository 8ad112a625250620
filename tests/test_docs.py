"""The documentation's Python blocks run as written, and the site builds with --strict.

Every ```python block of README.md and docs/ runs, page by page in one namespace (so a page's
later blocks build on its earlier ones), in a temporary folder. A block that needs what cannot
run here (a GPU, real weights, a provider's key, a server) is marked just above its fence with
``<!-- not run: the reason -->``; the reason is required.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not run:(?P<reason>.*?)-->", re.S)
FENCE = re.compile(r"^```python[ \t]*\n(?P<code>.*?)^```[ \t]*$", re.S | re.M)
#: Pages whose blocks read pages with the real cpu OCR (seconds each): left out of -m "not slow".
OCR_PAGES = {"README.md", "guides/library.md", "langchain.md", "concepts/pricing.md", "getting-started.md"}


def blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(line, code, reason it is not run or None) of each python block of `page`."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip().splitlines()
        marker = NOT_RUN.fullmatch(before[-1].strip()) if before else None
        reason = marker.group("reason").strip() if marker else None
        out.append((text.count("\n", 0, m.start()) + 1, m.group("code"), reason))
    return out


def name(page: Path) -> str:
    return page.relative_to(ROOT / "docs").as_posix() if page.parent != ROOT else page.name


RUNNABLE = [p for p in PAGES if any(reason is None for _, _, reason in blocks(p))]


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, id=name(p), marks=[pytest.mark.slow] if name(p) in OCR_PAGES else []) for p in RUNNABLE],
)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for line, code, reason in blocks(page):
        if reason is not None:
            continue
        try:
            exec(compile(code, f"{name(page)}:{line}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{name(page)}, the block at line {line}: {type(exc).__name__}: {exc}")
    assert not list(ROOT.glob("*.db")), "a block wrote a database into the checkout"


def test_every_block_not_run_says_why():
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in NOT_RUN.finditer(text):
            assert m.group("reason").strip(), f"{name(page)}: '<!-- not run: -->' needs a reason"
        for line, _, reason in blocks(page):
            assert reason is None or len(reason) >= 8, f"{name(page)}:{line}: say why the block cannot run"


def test_the_guides_hold_runnable_blocks():
    runnable = {name(p) for p in RUNNABLE}
    assert {"README.md", "guides/library.md", "langchain.md"} <= runnable


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
    reason="mkdocs is not installed (the docs extra)",
)
def test_site_builds_strict(tmp_path):
    mkdocs = shutil.which("mkdocs") or str(Path(sys.executable).parent / "mkdocs")
    done = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "api" / "index.html").exists()


def test_the_api_reference_covers_the_public_api():
    import optimem

    reference = (ROOT / "docs" / "reference" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: optimem\.(\w+)$", reference, re.M))
    assert set(optimem.__all__) - {"__version__"} <= documented, "add the new names to docs/reference/api.md"
