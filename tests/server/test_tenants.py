"""Auth and tenant isolation: another tenant's session answers exactly like a missing one, on every route."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from optimem.cli.main import main

from .conftest import auth, words_turns


@pytest.fixture(scope="module")
def acme_session(server, keys):
    """acme's session 'secret' with pages; returns its first page id."""
    with httpx.Client(base_url=server.url, headers=auth(keys["acme"]), timeout=60) as c:
        c.post(
            "/v1/sessions/secret/turns", json={"turns": words_turns(16, tag=" acme-only")}
        ).raise_for_status()
        created = c.post("/v1/compress", json={"session": "secret", "flush": True}).json()["created"]
    return created[0]


def _routes(session: str, page_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("GET", f"/v1/sessions/{session}/turns", None),
        ("GET", f"/v1/sessions/{session}/pages", None),
        ("GET", f"/v1/sessions/{session}/pages/{page_id}", None),
        ("GET", f"/v1/sessions/{session}/pages/{page_id}.png", None),
        ("GET", f"/v1/sessions/{session}/context", None),
        ("GET", f"/v1/sessions/{session}/stats", None),
        ("POST", "/v1/compress", {"session": session, "flush": True}),
        ("POST", "/v1/recall", {"session": session, "page_ids": [page_id]}),
        ("POST", "/v1/recall", {"session": session, "query": "acme-only"}),
        ("DELETE", f"/v1/sessions/{session}", None),
    ]


def test_another_tenant_gets_the_404_of_a_missing_session(server, keys, acme_session):
    page_id = acme_session
    with httpx.Client(base_url=server.url, headers=auth(keys["globex"]), timeout=30) as globex:
        assert "secret" not in globex.get("/v1/sessions").json()["sessions"]
        for (method, url, body), (_, missing_url, missing_body) in zip(
            _routes("secret", page_id), _routes("never-made", page_id), strict=True
        ):
            theirs = globex.request(method, url, json=body)
            missing = globex.request(method, missing_url, json=missing_body)
            assert theirs.status_code == missing.status_code == 404, (method, url, theirs.text)
            assert theirs.json() == {"error": {"type": "session_not_found", "message": "no session 'secret'"}}
            assert theirs.headers.keys() == missing.headers.keys()
        # globex's own session cannot reach acme's page by id either: the page's 404, as for any id
        globex.post("/v1/sessions/mine/turns", json={"role": "user", "content": "hi"}).raise_for_status()
        for suffix in ("", ".png"):
            stolen = globex.get(f"/v1/sessions/mine/pages/{page_id}{suffix}")
            nothing = globex.get(f"/v1/sessions/mine/pages/987654321{suffix}")
            assert stolen.status_code == nothing.status_code == 404
            assert stolen.json()["error"]["message"] == f"no page {page_id} in session 'mine'"
            assert nothing.json()["error"]["message"] == "no page 987654321 in session 'mine'"
        stolen = globex.post("/v1/recall", json={"session": "mine", "page_ids": [page_id]})
        assert stolen.status_code == 404 and "acme" not in stolen.text
    with httpx.Client(base_url=server.url, headers=auth(keys["acme"]), timeout=30) as acme:
        assert acme.get("/v1/sessions/secret/turns").json()["total"] == 16  # untouched by the delete
        assert acme.get("/v1/sessions/mine/turns").status_code == 404  # and it cannot see globex's


def test_keys_are_required_and_checked(server, keys):
    for headers in ({}, {"Authorization": "Bearer om_not-a-key"}, {"Authorization": "Basic abc"}):
        r = httpx.get(server.url + "/v1/sessions", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server.url + "/healthz").status_code == 200  # liveness needs no key


def test_keys_cli_add_list_revoke_and_a_running_server_obeys(server, keys):
    runner = CliRunner()
    added = runner.invoke(main, ["keys", "add", "initech", "--label", "ci", "--keys", keys["file"]])
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[-1]
    assert key.startswith("om_")
    listing = runner.invoke(main, ["keys", "list", "--keys", keys["file"]]).output
    assert "initech" in listing and key not in listing and key not in Path(keys["file"]).read_text()
    key_id = next(line.split()[0] for line in listing.splitlines() if "initech" in line)
    assert httpx.get(server.url + "/v1/sessions", headers=auth(key)).status_code == 200
    revoked = runner.invoke(main, ["keys", "revoke", key_id, "--keys", keys["file"]])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert httpx.get(server.url + "/v1/sessions", headers=auth(key)).status_code == 401
    bad = runner.invoke(main, ["keys", "add", "Not A Tenant", "--keys", keys["file"]])
    assert bad.exit_code != 0 and "tenant" in bad.output


def test_serve_refuses_a_public_address_without_keys(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--db", str(tmp_path / "m.db")])
    assert result.exit_code != 0 and "--insecure-no-auth" in result.output
