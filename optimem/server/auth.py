"""API keys: a JSON keys file of hashed keys mapped to tenants, and the checks against it.

A key is ``om_`` + 43 random URL-safe characters (256 bits). The file keeps only its SHA-256
(a slow password hash buys nothing for keys this random) and the tenant it belongs to; the
plaintext is shown once, by `optimem keys add`. The file is re-read whenever it changes, so
a new key works and a revoked key stops working on the next request, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

KEY_PREFIX = "om_"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
#: Who every caller is when the service runs without keys (loopback or --insecure-no-auth): the
#: one local user, who sees every session of the database by its full id (docs/tenancy.md).
LOCAL_TENANT = "local"


class KeysFileError(ValueError):
    """The keys file cannot be read or holds something unexpected."""


@dataclass(frozen=True)
class KeyRecord:
    """One API key as the keys file keeps it (never the key itself)."""

    id: str
    tenant: str
    sha256: str
    created_at: str
    label: str = ""
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def check_tenant(tenant: str) -> str:
    if not re.fullmatch(TENANT_PATTERN, tenant):
        raise KeysFileError(
            f"tenant {tenant!r} must be 1-64 lower-case letters, digits, '-' or '_' (starting alphanumeric)"
        )
    return tenant


class KeysFile:
    """The keys file at `path`: add, list, revoke, authenticate."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._version: tuple[int, int, int] | None = None
        self._records: list[KeyRecord] = []
        self._by_hash: dict[str, KeyRecord] = {}

    # -- reading ---------------------------------------------------------------------------

    def records(self) -> list[KeyRecord]:
        self._refresh(force=True)
        return list(self._records)

    def authenticate(self, key: str) -> KeyRecord | None:
        """The active record of `key`, or None. Re-reads the file when it changed."""
        if not key.startswith(KEY_PREFIX):
            return None
        self._refresh()
        digest = hash_key(key)
        record = self._by_hash.get(digest)
        if record is None or not hmac.compare_digest(record.sha256, digest) or not record.active:
            return None
        return record

    def _refresh(self, *, force: bool = False) -> None:
        """Re-read the file if it changed (one stat per call: revocations apply at once)."""
        with self._lock:
            try:
                st = self.path.stat()
                version: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                version = None
            if version == self._version and not force:
                return
            self._records = self._read() if version is not None else []
            self._by_hash = {r.sha256: r for r in self._records}
            self._version = version

    def _read(self) -> list[KeyRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [KeyRecord(**r) for r in data["keys"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeysFileError(f"cannot read keys file {self.path}: {exc}") from exc

    # -- writing ---------------------------------------------------------------------------

    def add(self, tenant: str, label: str = "") -> tuple[KeyRecord, str]:
        """Create a key for `tenant`; returns its record and the plaintext key (shown once)."""
        check_tenant(tenant)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord(
            id=secrets.token_hex(4),
            tenant=tenant,
            sha256=hash_key(key),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            label=label,
        )
        self._write([*self.records(), record])
        return record, key

    def revoke(self, key_id: str) -> KeyRecord:
        """Mark the key with id `key_id` revoked (kept in the file for the record)."""
        records = self.records()
        for i, r in enumerate(records):
            if r.id == key_id:
                if not r.active:
                    return r
                records[i] = KeyRecord(
                    **{**asdict(r), "revoked_at": datetime.now(UTC).isoformat(timespec="seconds")}
                )
                self._write(records)
                return records[i]
        raise KeysFileError(f"no key with id {key_id!r} in {self.path}")

    def _write(self, records: list[KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        text = json.dumps({"version": 1, "keys": [asdict(r) for r in records]}, indent=2)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, self.path)
        self._refresh(force=True)
