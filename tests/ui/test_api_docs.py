"""/docs (Swagger UI) and /redoc render in Chromium with the network cut: their files ship with the package."""

from __future__ import annotations

import pytest

from optimem.server.process import Server

from .conftest import Console

#: The one request ReDoc makes outside (an <img> in its footer that removes itself on error).
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("apidocs") / "memory.db").start()
    yield srv
    srv.stop()


def offline_page(browser, base_url: str):
    """A page whose every request to anywhere but the server is refused and recorded."""
    page = browser.new_context().new_page()
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(base_url):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return page, Console(page), outside


@pytest.mark.slow
def test_swagger_ui_renders_offline(browser, docs_server):
    page, console, outside = offline_page(browser, docs_server.url)
    page.goto(f"{docs_server.url}/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert page.locator(".opblock-summary-path", has_text="/v1/compress").count() == 1
    assert outside == [] and console.errors == []


@pytest.mark.slow
def test_redoc_renders_offline(browser, docs_server):
    page, console, outside = offline_page(browser, docs_server.url)
    page.goto(f"{docs_server.url}/redoc")
    page.wait_for_selector(".redoc-wrap h1", timeout=20_000)
    assert "optimem" in page.locator(".redoc-wrap h1").first.inner_text()
    assert page.locator("[data-section-id^='tag/'], [data-section-id^='operation/']").count() > 5
    # ReDoc's footer tries its maker's logo, and hides it when it cannot load: nothing else leaves
    assert [u for u in outside if u != REDOC_LOGO] == []
    refused = ["Failed to load resource: net::ERR_FAILED"] * len(outside)  # the logo, refused above
    assert console.errors == refused


def test_the_docs_files_are_served_by_the_app(tmp_path):
    from fastapi.testclient import TestClient

    from optimem import OpticalMemory
    from optimem.server import Settings, create_app

    memory = OpticalMemory(tmp_path / "m.db", backend="test-double")
    with TestClient(create_app(Settings(backend="test-double"), memory=memory)) as c:
        html = c.get("/docs").text
        assert "/docs-static/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
        js = c.get("/docs-static/swagger-ui-bundle.js")
        assert js.status_code == 200 and "SwaggerUIBundle" in js.text
        redoc = c.get("/redoc").text
        assert "/docs-static/redoc.standalone.js" in redoc and "fonts.googleapis" not in redoc
        assert c.get("/docs-static/redoc.standalone.js").status_code == 200
    memory.close()
