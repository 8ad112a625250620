"""The viewer of a service without keys shows the sessions an agent made with the library, by full id (docs/tenancy.md)."""

from __future__ import annotations

import pytest

from optimem.server.process import Server

from .conftest import Console, seed_fade


@pytest.fixture(scope="module")
def library_server(tmp_path_factory):
    """A keyless `optimem serve` over a database the library filled: 'thread-42' and 'acme/fade'."""
    db = tmp_path_factory.mktemp("one-view") / "m.db"
    mem = seed_fade(db, "acme/fade")
    mem.session("thread-42").add_turn("user", "the library wrote this thread; the viewer shows it.")
    mem.close()
    srv = Server(db, "--decode", "now").start()
    yield srv
    srv.stop()


@pytest.mark.slow  # Chromium
def test_the_viewer_lists_library_sessions_and_opens_one_whose_id_holds_a_slash(browser, library_server):
    page = browser.new_page()
    console = Console(page)
    page.goto(f"{library_server.url}/ui/")
    rows = page.get_by_test_id("sessions").locator("a")
    assert sorted(rows.all_inner_texts()) == ["acme/fade", "thread-42"]
    with page.expect_navigation():
        page.get_by_role("link", name="acme/fade").click()
    assert page.url.endswith("/ui/s/acme/fade")
    assert int(page.get_by_test_id("page-count").inner_text()) > 1
    thumbnails = page.get_by_test_id("pages").locator("img")
    thumbnails.first.wait_for()
    assert thumbnails.first.evaluate("i => i.complete && i.naturalWidth > 0")
    with page.expect_navigation():
        page.get_by_test_id("pages").locator("a").first.click()
    assert "/ui/s/acme/fade/pages/" in page.url
    assert page.get_by_test_id("page-image").evaluate("i => i.naturalWidth") > 0
    assert console.errors == []
    page.close()
