"""Interactive API docs at /docs (Swagger UI) and /redoc (ReDoc), served offline.

FastAPI's defaults load Swagger UI and ReDoc from a CDN, so `/docs` is blank without the
internet. Here the pages point at the script and style files that the `fastapi-offline` wheel
ships (MIT; it bundles Swagger UI, Apache-2.0, and ReDoc, MIT), served by this app from the
installed package. Only the files are used, not its FastAPI subclass.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_URL = "/docs-static"


def static_dir() -> str:
    """The folder of Swagger UI and ReDoc files inside the installed fastapi-offline package."""
    return str(files("fastapi_offline") / "static")


def install(app: FastAPI) -> None:
    """Serve /docs, /docs/oauth2-redirect and /redoc from packaged files (the app is built with
    ``docs_url=None, redoc_url=None``)."""
    app.mount(STATIC_URL, StaticFiles(directory=static_dir()), name="docs-static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_URL}/favicon.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            redoc_js_url=f"{STATIC_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_URL}/favicon.png",
            with_google_fonts=False,
        )
