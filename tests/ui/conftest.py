"""Fixtures for the viewer tests: a seeded memory, real `optimem serve` processes, the system Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from optimem import OpticalMemory
from optimem.server.auth import KeysFile
from optimem.server.process import Server
from tests.server.conftest import _loopback_only as _loopback_only  # network: loopback only
from tests.server.conftest import words_turns

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


#: A budget at which the seeded session ends with its oldest pages at Tiny and newer at Small.
FADE_BUDGET = 960


def seed_fade(db: Path, session: str, backend: str = "test-double") -> OpticalMemory:
    """120 turns added in batches of 20 and compressed after each, typeset at Base: the budget
    ages the pages down the ladder, so the session ends with pages at several modes."""
    mem = OpticalMemory(
        db, backend=backend, policy=f"budget:{FADE_BUDGET}", decode="now", creation_mode="base"
    )
    s = mem.session(session)
    for i in range(0, 120, 20):
        s.add_turns(words_turns(20, words=70, tag=f" b{i}"))
        s.compress()
    return mem


@pytest.fixture(scope="session")
def browser():
    """Chromium from the system package (`apt-get install chromium`), headless."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'optimem[dev]' (playwright)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/install.sh does it)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def ui_keys(tmp_path_factory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    keys_file = KeysFile(path)
    return {"acme": keys_file.add("acme")[1], "globex": keys_file.add("globex")[1], "file": str(path)}


@pytest.fixture(scope="module")
def fade_server(tmp_path_factory, ui_keys) -> Iterator[tuple[Server, dict]]:
    """acme's session 'fade' (pages at Small and Tiny, read by the test double) and globex's
    'other', served with auth by a real `optimem serve` on 127.0.0.1."""
    db = tmp_path_factory.mktemp("ui") / "memory.db"
    mem = seed_fade(db, "acme/fade")
    fade = mem.session("acme/fade")
    facts = {
        "pages": [(p.id, p.mode.value, p.canvas) for p in fade.pages()],
        "stats": fade.stats().to_dict(),
        "unpaged": sum(not t.paged for t in fade.turns()),
    }
    mem.session("globex/other").add_turn("user", "globex keeps its own notes here.")
    mem.close()
    srv = Server(db, "--keys", ui_keys["file"], "--rate-per-minute", "100000", "--decode", "now").start()
    yield srv, facts
    srv.stop()


class Console:
    """Console errors and uncaught exceptions of one browser page."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))


def sign_in(context, base_url: str, key: str, next_path: str = "/ui/"):
    """A browser page signed in through the login form; returns (page, console)."""
    page = context.new_page()
    console = Console(page)
    page.goto(f"{base_url}{next_path}")
    assert "/ui/login" in page.url
    page.fill("input[name=key]", key)
    with page.expect_navigation():
        page.click("button[type=submit]")
    return page, console


def keep_screenshot(path: Path, target: str | None) -> None:
    """Copy a screenshot the test took to `target` ($OPTIMEM_UI_SCREENSHOT), e.g. docs/img/viewer.png."""
    if target:
        shutil.copyfile(path, target)
