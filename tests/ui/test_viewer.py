"""The viewer in a real browser over a real server: timeline thumbnails and counts, a page opened, search, login, tenant isolation.

The seeded session is read by the `test-double` backend (plumbing only: no fidelity or speed
figure comes from here); `test_real_ocr.py` runs one page through the real `cpu` OCR.
"""

from __future__ import annotations

import os
import struct

import httpx
import pytest

from .conftest import Console, keep_screenshot, sign_in

#: Every test here drives Chromium against a real server: the fast subset has tests/ui/test_routes.py.
pytestmark = pytest.mark.slow


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def acme(browser, fade_server, ui_keys):
    """A browser context signed in as acme (cookie set by the login form)."""
    srv, _ = fade_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page, console = sign_in(context, srv.url, ui_keys["acme"])
    yield context, page, console
    context.close()


def test_sessions_list_shows_only_the_tenants_sessions_with_counts(acme, fade_server):
    srv, facts = fade_server
    _, page, console = acme
    page.goto(f"{srv.url}/ui/")
    rows = page.locator("[data-testid=sessions] tbody tr")
    assert rows.count() == 1
    row = rows.first
    assert row.get_attribute("data-session") == "fade"
    assert page.get_by_test_id("tenant").inner_text() == "acme"
    cells = row.locator("td")
    assert cells.nth(1).inner_text() == f"{facts['stats']['turns']:,}"
    modes = {b.get_attribute("data-mode"): b.inner_text() for b in row.locator(".badge").all()}
    expected = {m: s["pages"] for m, s in facts["stats"]["per_mode"].items() if s["pages"]}
    assert {m: int(t.split()[0]) for m, t in modes.items()} == expected
    assert console.errors == []


def test_timeline_shows_every_page_at_its_mode_and_size(acme, fade_server, tmp_path):
    srv, facts = fade_server
    _, page, console = acme
    page.goto(f"{srv.url}/ui/s/fade")
    page.wait_for_load_state("networkidle")
    modes = {mode for _, mode, _ in facts["pages"]}
    assert len(modes) >= 2, f"the seed should leave pages at several modes, got {facts['pages']}"

    thumbs = page.locator("[data-testid=pages] li")
    assert thumbs.count() == len(facts["pages"])
    for li, (pid, mode, canvas) in zip(thumbs.all(), facts["pages"], strict=True):
        assert li.get_attribute("data-page") == str(pid)
        assert li.get_attribute("data-mode") == mode
        img = li.locator("img")
        # loaded, at the page's own canvas (Tiny 512 px, Small 640 px), shown at a third of it
        natural = img.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
        assert natural == [True, canvas, canvas]
        assert img.get_attribute("width") == str(canvas // 3)
        assert f"{pid}" in li.inner_text() and mode in li.inner_text()
        assert "confidence 100.0%" in li.inner_text()  # the test double's confidence, read from the cache

    assert page.get_by_test_id("page-count").inner_text() == str(len(facts["pages"]))
    assert page.get_by_test_id("turns").inner_text() == f"{facts['stats']['turns']:,}"
    for mode in modes:
        badge = page.locator(f"[data-testid=modes] [data-mode={mode}]")
        assert badge.get_attribute("data-pages") == str(sum(m == mode for _, m, _ in facts["pages"]))
    assert page.locator("[data-testid=recent-turns] li").count() == min(facts["unpaged"], 20)
    chart = page.get_by_test_id("chart")
    assert chart.locator("polyline").count() == 2
    assert chart.locator("rect.band").count() == len(facts["pages"]) + (facts["unpaged"] > 0)

    shot = tmp_path / "timeline.png"
    page.screenshot(path=str(shot), full_page=True)
    assert png_size(shot.read_bytes())[0] >= 1000
    keep_screenshot(shot, os.environ.get("OPTIMEM_UI_SCREENSHOT"))
    assert console.errors == []


def test_opening_a_page_shows_its_image_and_recalled_text(acme, fade_server):
    srv, facts = fade_server
    _, page, console = acme
    pid, mode, canvas = facts["pages"][0]
    page.goto(f"{srv.url}/ui/s/fade")
    page.locator(f"[data-page='{pid}'] a").click()
    page.wait_for_load_state("networkidle")
    assert page.url.endswith(f"/ui/s/fade/pages/{pid}")
    assert page.get_by_test_id("page-mode").inner_text() == mode
    image = page.get_by_test_id("page-image")
    assert image.evaluate("i => [i.complete, i.naturalWidth, i.width]") == [True, canvas, canvas]
    recalled = page.get_by_test_id("recalled").inner_text()
    assert "Turn 0 b0: migration" in recalled
    assert page.get_by_test_id("fidelity").inner_text().startswith("100.0%")  # test double: the layout's text

    zoomed = page.locator("[data-zoom-image]")
    assert zoomed.evaluate("i => i.width") == 2 * canvas
    page.locator("[data-zoom]").fill("3")
    assert zoomed.evaluate("i => i.width") == 3 * canvas
    # the JSON twin holds what the page shows
    twin = page.request.get(f"{srv.url}/ui/s/fade/pages/{pid}?format=json").json()
    assert twin["page"]["id"] == pid and twin["recall"]["text"].strip() in recalled.replace("\xa0", " ")
    assert console.errors == []


def test_search_box_lists_snippets_that_open_the_page(acme, fade_server):
    srv, _ = fade_server
    _, page, console = acme
    page.goto(f"{srv.url}/ui/s/fade")
    page.keyboard.press("/")
    page.keyboard.type("OPS-4803 b20")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/ui/s/fade/search?q=OPS-4803" in page.url
    hits = page.locator("[data-testid=hits] li")
    assert hits.count() >= 1
    assert "OPS-4803" in hits.first.inner_text()
    target = hits.first.get_attribute("data-page")
    with page.expect_navigation():
        hits.first.locator("a").click()
    assert page.url.endswith(f"/pages/{target}")
    assert "OPS-4803" in page.get_by_test_id("recalled").inner_text()
    assert console.errors == []


def test_another_tenants_session_is_unreachable_by_url(browser, fade_server, ui_keys, acme):
    srv, facts = fade_server
    pid = facts["pages"][0][0]
    context = browser.new_context()
    page, _ = sign_in(context, srv.url, ui_keys["globex"])
    rows = page.locator("[data-testid=sessions] tbody tr")
    assert [r.get_attribute("data-session") for r in rows.all()] == ["other"]
    for path in ("/ui/s/fade", f"/ui/s/fade/pages/{pid}", "/ui/s/fade/search?q=migration"):
        theirs = page.goto(srv.url + path)
        assert theirs.status == 404
        assert page.get_by_test_id("error").inner_text() == "no session 'fade'"
        missing = page.goto(srv.url + path.replace("fade", "never-made"))
        assert missing.status == 404
    for suffix in (f"/ui/s/fade/pages/{pid}.png", "/ui/s/fade?format=json"):
        response = page.request.get(srv.url + suffix)
        assert response.status == 404
        assert response.json() == {"error": {"type": "session_not_found", "message": "no session 'fade'"}}
    # globex's own session cannot show acme's page by its id
    assert page.request.get(f"{srv.url}/ui/s/other/pages/{pid}.png").status == 404
    context.close()


def test_signed_out_browsers_and_bad_keys_see_nothing(browser, fade_server):
    srv, facts = fade_server
    pid = facts["pages"][0][0]
    context = browser.new_context()
    page = context.new_page()
    console = Console(page)
    page.goto(f"{srv.url}/ui/s/fade/pages/{pid}")
    assert "/ui/login" in page.url and "next=/ui/s/fade/pages" in page.url
    page.fill("input[name=key]", "om_not-a-real-key")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.get_by_test_id("login-error").is_visible()
    assert all("401" in e for e in console.errors)  # at most the form's own 401 status, nothing else
    for path in (f"/ui/s/fade/pages/{pid}.png", "/ui/?format=json"):
        assert httpx.get(srv.url + path).status_code == 401
    bogus = httpx.get(srv.url + f"/ui/s/fade/pages/{pid}.png", cookies={"optimem_key": "om_forged"})
    assert bogus.status_code == 401
    context.close()


def test_cookie_is_httponly_and_cross_site_posts_are_refused(acme, fade_server, ui_keys):
    srv, facts = fade_server
    context, _, _ = acme
    (cookie,) = [c for c in context.cookies() if c["name"] == "optimem_key"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    pid = facts["pages"][0][0]
    forged = httpx.post(
        f"{srv.url}/ui/s/fade/pages/{pid}/read",
        cookies={"optimem_key": ui_keys["acme"]},
        headers={"Origin": "http://evil.example"},
    )
    assert forged.status_code == 403
    # a bearer key works for the JSON twins, as for /v1
    twin = httpx.get(
        f"{srv.url}/ui/s/fade?format=json", headers={"Authorization": f"Bearer {ui_keys['acme']}"}
    )
    assert twin.status_code == 200
    assert [p["id"] for p in twin.json()["pages"]] == [p for p, _, _ in facts["pages"]]


def test_json_twins_hold_what_v1_serves(fade_server, ui_keys):
    srv, _ = fade_server
    headers = {"Authorization": f"Bearer {ui_keys['acme']}"}
    with httpx.Client(base_url=srv.url, headers=headers, timeout=30) as c:
        timeline = c.get("/ui/s/fade", params={"format": "json"}).json()
        pages = c.get("/v1/sessions/fade/pages").json()["pages"]
        stats = c.get("/v1/sessions/fade/stats").json()
        pid = pages[0]["id"]
        page = c.get(f"/ui/s/fade/pages/{pid}", params={"format": "json"}).json()
        recalled = c.post("/v1/recall", json={"session": "fade", "page_ids": [pid]}).json()["pages"][0]
        search = c.get("/ui/s/fade/search", params={"q": "OPS-4803", "format": "json"}).json()
        hits = c.post("/v1/recall", json={"session": "fade", "query": "OPS-4803", "limit": 10}).json()["hits"]
    fields = ("id", "mode", "turn_ids", "text_tokens", "positions", "compression", "canvas")
    assert [{k: p[k] for k in fields} for p in timeline["pages"]] == [
        {k: p[k] for k in fields} for p in pages
    ]
    for name in ("turns", "text_tokens", "context_tokens", "positions", "savings"):
        assert timeline["stats"][name] == stats[name]
    assert {k: page["recall"][k] for k in ("text", "raw_text", "mode", "confidence")} == {
        k: recalled[k] for k in ("text", "raw_text", "mode", "confidence")
    }
    assert [(h["page_id"], h["snippet"]) for h in search["hits"]] == [
        (h["page_id"], h["snippet"]) for h in hits
    ]
