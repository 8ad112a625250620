"""`optimem serve --rehearse`: a page recalled by id over REST is sharpened, and stays so."""

from __future__ import annotations

import httpx
import pytest

from optimem.server.process import Server

from .conftest import words_turns


@pytest.mark.slow
def test_serve_rehearse_sharpens_a_recalled_page(tmp_path):
    srv = Server(tmp_path / "m.db", "--rehearse", "--policy", "budget:680", "--decode", "now").start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.post("/v1/sessions/r/turns", json={"turns": words_turns(60)}).status_code == 201
            assert c.post("/v1/compress", json={"session": "r"}).status_code == 200
            pages = c.get("/v1/sessions/r/pages").json()["pages"]
            modes = [p["mode"] for p in pages]
            assert modes[0] == "tiny" and "small" in modes, modes
            read = c.post("/v1/recall", json={"session": "r", "page_ids": [pages[0]["id"]]})
            assert read.status_code == 200 and read.json()["pages"][0]["mode"] == "tiny"
            after = c.get("/v1/sessions/r/pages").json()["pages"]
            assert [p["id"] for p in after] == [p["id"] for p in pages]
            assert after[0]["mode"] == "small"  # rehearsed; another page paid for it
            assert sorted(p["mode"] for p in after) == sorted(modes)
            stats = c.get("/v1/sessions/r/stats").json()
            assert stats["context_tokens"] <= 680
    finally:
        srv.stop()
