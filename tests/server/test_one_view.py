"""One view of the sessions: what the library writes, `optimem serve` shows (docs/tenancy.md).

Without keys the one local user sees every session of the database by its full id; with keys
each tenant sees only the sessions under its own prefix, called without it.
"""

from __future__ import annotations

import httpx
import pytest

from optimem import OpticalMemory
from optimem.server.process import Server

from .conftest import auth, words_turns


@pytest.fixture(scope="module")
def library_db(tmp_path_factory):
    """Sessions an agent made with the library: a plain id, a tenant-style id, another tenant's."""
    db = tmp_path_factory.mktemp("one-view") / "m.db"
    with OpticalMemory(db, backend="test-double", decode="now") as mem:
        for sid in ("thread-42", "acme/notes", "globex/plans"):
            s = mem.session(sid)
            s.add_turns(words_turns(12, tag=f" {sid.replace('/', '-')}-only"))
            s.compress(flush=True)
    return db


def test_without_keys_the_library_sessions_are_listed_and_usable_by_full_id(library_db):
    srv = Server(library_db, "--decode", "now").start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            assert c.get("/v1/sessions").json()["sessions"] == ["thread-42", "acme/notes", "globex/plans"]
            for sid in ("thread-42", "acme/notes"):
                pages = c.get(f"/v1/sessions/{sid}/pages").json()
                assert pages["session"] == sid and pages["pages"], pages
                first = pages["pages"][0]["id"]
                assert c.get(f"/v1/sessions/{sid}/pages/{first}").json()["id"] == first
                assert c.get(f"/v1/sessions/{sid}/pages/{first}.png").headers["content-type"] == "image/png"
                assert c.get(f"/v1/sessions/{sid}/stats").json()["session"] == sid
                assert c.get(f"/v1/sessions/{sid}/turns").json()["total"] == 12
                read = c.post("/v1/recall", json={"session": sid, "page_ids": [first]}).json()
                assert read["session"] == sid and read["pages"][0]["page_id"] == first
            # writes go to the session of that full id, which the library then sees
            added = c.post("/v1/sessions/acme/notes/turns", json={"role": "user", "content": "one more"})
            assert added.status_code == 201 and added.json()["session"] == "acme/notes"
            assert c.post("/v1/compress", json={"session": "acme/notes"}).status_code == 200
            missing = c.get("/v1/sessions/acme/never/stats")
            assert missing.status_code == 404
            assert missing.json()["error"]["message"] == "no session 'acme/never'"
            assert c.get("/v1/sessions/acme//stats").status_code == 404  # no route has an empty segment
            assert c.get("/v1/sessions/acme/x y/stats").status_code == 422  # the name's rule
            # a route word is never part of a full id: this is the 405 of the turns route
            assert c.delete("/v1/sessions/thread-42/turns").status_code == 405
            # the viewer lists the same sessions and opens them
            listing = c.get("/ui/", params={"format": "json"}).json()
            assert {row["session"] for row in listing["sessions"]} == {
                "thread-42",
                "acme/notes",
                "globex/plans",
            }
            html = c.get("/ui/").text
            assert 'href="/ui/s/acme/notes"' in html
            timeline = c.get("/ui/s/acme/notes", params={"format": "json"}).json()
            assert timeline["session"] == "acme/notes" and timeline["pages"]
            page_id = timeline["pages"][0]["id"]
            assert c.get(f"/ui/s/acme/notes/pages/{page_id}", params={"format": "json"}).status_code == 200
            assert (
                c.get("/ui/s/acme/notes/search", params={"q": "notes", "format": "json"}).status_code == 200
            )
        with OpticalMemory(library_db, backend="test-double", decode="lazy") as mem:
            assert [t.content for t in mem.session("acme/notes").turns()][-1] == "one more"
    finally:
        srv.stop()


def test_with_keys_each_tenant_sees_only_its_prefix(library_db, keys):
    srv = Server(library_db, "--keys", keys["file"], "--decode", "now").start()
    try:
        with httpx.Client(base_url=srv.url, headers=auth(keys["acme"]), timeout=30) as acme:
            assert acme.get("/v1/sessions").json()["sessions"] == ["notes"]
            assert acme.get("/v1/sessions/notes/pages").json()["session"] == "notes"
            assert acme.get("/ui/", params={"format": "json"}).json()["sessions"][0]["session"] == "notes"
            # a full id is not a tenant's name: no '/' and no reaching outside the prefix
            for sid in ("acme/notes", "globex/plans"):
                refused = acme.get(f"/v1/sessions/{sid}/stats")
                assert refused.status_code == 422, refused.text
            assert acme.get("/v1/sessions/thread-42/stats").status_code == 404
        with httpx.Client(base_url=srv.url, headers=auth(keys["globex"]), timeout=30) as globex:
            assert globex.get("/v1/sessions").json()["sessions"] == ["plans"]
    finally:
        srv.stop()
