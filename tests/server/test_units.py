"""The service's small parts on their own: keys file, settings, rate limiter, error mapping."""

from __future__ import annotations

import json
import stat

import pytest

from optimem import BackendUnavailable, InputError, PageNotFound, SessionNotFound, StoreError
from optimem.server.auth import KeysFile, KeysFileError
from optimem.server.errors import ApiError, library_status
from optimem.server.limits import RateLimiter
from optimem.server.settings import Settings, is_loopback


def test_keys_file_keeps_hashes_only_and_revokes(tmp_path):
    path = tmp_path / "keys.json"
    keys = KeysFile(path)
    record, key = keys.add("acme", "laptop")
    assert key.startswith("om_") and len(key) > 40
    assert key not in path.read_text() and json.loads(path.read_text())["keys"][0]["tenant"] == "acme"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.authenticate(key) == record
    assert keys.authenticate(key + "x") is None and keys.authenticate("nonsense") is None
    keys.revoke(record.id)
    assert KeysFile(path).authenticate(key) is None  # a fresh reader sees the revocation
    with pytest.raises(KeysFileError):
        keys.revoke("nope")
    with pytest.raises(KeysFileError):
        keys.add("Bad Tenant")
    path.write_text("{not json")
    with pytest.raises(KeysFileError):
        KeysFile(path).records()


def test_settings_from_env_and_the_loopback_rule():
    s = Settings.from_env({"OPTIMEM_PORT": "9000", "OPTIMEM_INSECURE_NO_AUTH": "true"}, backend="rapidocr")
    assert (s.port, s.insecure_no_auth, s.backend) == (9000, True, "rapidocr")
    assert Settings.from_env(Settings(port=1234, keys="k.json").to_env()) == Settings(
        port=1234, keys="k.json"
    )
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    Settings().check()
    with pytest.raises(ValueError, match="insecure-no-auth"):
        Settings(host="0.0.0.0").check()
    Settings(host="0.0.0.0", keys="k.json").check()
    Settings(host="0.0.0.0", insecure_no_auth=True).check()
    with pytest.raises(ValueError):
        Settings.from_env({"OPTIMEM_PORT": "eighty"})


def test_rate_limiter_buckets_per_key():
    limiter = RateLimiter(3)
    for _ in range(3):
        limiter.hit("a")
    with pytest.raises(ApiError) as refused:
        limiter.hit("a")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "20"
    limiter.hit("b")  # another key has its own bucket
    RateLimiter(0).hit("a")  # 0 turns the limit off


def test_library_errors_map_to_statuses():
    assert library_status(SessionNotFound("x")) == 404
    assert library_status(PageNotFound("x")) == 404
    assert library_status(InputError("x")) == 422
    assert library_status(BackendUnavailable("x")) == 503
    assert library_status(StoreError("x")) == 503
