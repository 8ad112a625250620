"""One page through the real `cpu` OCR in the viewer: fidelity against the source, read again, and search by a word only OCR knows."""

from __future__ import annotations

import httpx
import pytest

from optimem import OpticalMemory
from optimem.server.process import Server

from .conftest import Console

TURNS = [
    {"role": "user", "content": "Where did we leave the spare key for the boathouse?"},
    {
        "role": "assistant",
        "content": "It is taped under the periwinkle flower box by the north door, "
        "next to the coiled green hose. Ticket OPS-4821 tracks the new lock.",
    },
    {"role": "user", "content": "Thanks, and remind me to order more lamp oil before Friday."},
]


@pytest.fixture(scope="module")
def ocr_server(tmp_path_factory):
    """A `cpu` server without keys (loopback: the local user sees every session by its full id), one page in 'ocr'."""
    db = tmp_path_factory.mktemp("ocr") / "memory.db"
    srv = Server(db, "--decode", "now", backend="cpu").start(timeout=120)
    with httpx.Client(base_url=srv.url, timeout=120) as c:
        c.post("/v1/sessions/ocr/turns", json={"turns": TURNS}).raise_for_status()
        created = c.post("/v1/compress", json={"session": "ocr", "flush": True}).json()["created"]
    assert len(created) == 1
    yield srv, created[0]
    srv.stop()


@pytest.mark.slow
def test_a_page_read_by_real_ocr_shows_fidelity_reads_again_and_is_found_by_its_ocr_text(browser, ocr_server):
    srv, pid = ocr_server
    page = browser.new_page()
    console = Console(page)

    page.goto(f"{srv.url}/ui/s/ocr/pages/{pid}")
    assert page.get_by_test_id("page-image").evaluate("i => i.naturalWidth") == 640  # Small
    recalled = page.get_by_test_id("recalled").inner_text()
    assert "periwinkle" in recalled and "boathouse" in recalled
    fidelity = float(page.get_by_test_id("fidelity").inner_text().split("%")[0])
    assert fidelity >= 90.0  # cpu reads a sharp Small page at ~97%
    assert "OPS-4821" in page.locator("details .verbatim").text_content()

    with page.expect_navigation():
        page.get_by_test_id("read-again").click()
    fresh = page.get_by_test_id("fresh")
    assert "cpu" in fresh.inner_text()
    assert float(page.get_by_test_id("fresh-fidelity").inner_text().rstrip("%")) >= 80.0

    # drop the source archive: from now on only the page and its OCR text can answer
    with OpticalMemory(srv.db, backend="test-double") as mem:
        assert mem.session("ocr").drop_archive() > 0
    page.goto(f"{srv.url}/ui/s/ocr/search?q=periwinkle")
    hit = page.locator(f"[data-testid=hits] li[data-page='{pid}']")
    assert "periwinkle" in hit.locator("blockquote").inner_text().lower()
    with page.expect_navigation():
        hit.locator("a").click()
    assert page.get_by_test_id("no-source").is_visible()  # no archive: no source diff, no fidelity
    assert "periwinkle" in page.get_by_test_id("recalled").inner_text()
    assert console.errors == []
    page.close()
