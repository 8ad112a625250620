"""The service's settings: one frozen dataclass, read from options or `OPTIMEM_*` variables."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, fields
from typing import Any, Literal

ENV_PREFIX = "OPTIMEM_"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8421


@dataclass(frozen=True)
class Settings:
    """How `optimem serve` runs. Every field can come from `OPTIMEM_<FIELD>` (upper case)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    db: str = "optimem.db"
    """SQLite file (or sqlite:/// URL) of the memory, or a postgresql:// URL (replicas share it)."""
    backend: str = "cpu"
    """OCR backend that reads pages back."""
    warmup: bool = True
    """Pay the backend's one-time costs (a GPU decoder's compile and CUDA graphs for batches 1
    and 8) at start, so /readyz answers only once recalls run at full speed."""
    policy: str = "budget:4000"
    """Aging policy of every session (budget:N, budget:N:salient, turns, clock or none)."""
    rehearse: bool = False
    """Rehearsal: a page read back by id is sharpened one rung from the archive (see
    `OpticalMemory(rehearse=True)`)."""
    decode: Literal["background", "now", "lazy", "queue"] = "background"
    """When pages are OCRed: background (default), now, lazy, or queue (PostgreSQL: `optimem
    worker` processes decode them)."""
    workers: int = 1
    keys: str | None = None
    """Keys file (hashed API keys → tenants). Without one there is no auth: loopback only."""
    metrics_key: str | None = None
    """With keys: the bearer key `GET /metrics` needs (set it in `OPTIMEM_METRICS_KEY`; a command
    line is visible to other users). With keys and no metrics key, `/metrics` answers 403.
    Without keys (loopback) `/metrics` is open, as the whole service is."""
    insecure_no_auth: bool = False
    """Allow serving a non-loopback address without keys (every caller sees every session)."""
    max_body_bytes: int = 8 * 1024 * 1024
    """Largest request body; more is 413."""
    max_turns_per_request: int = 1000
    max_pages_per_recall: int = 20
    max_recall_hits: int = 50
    rate_per_minute: int = 600
    """Requests per API key (the local user without auth) per minute; 0 = off. Counted in the
    process, or in the database where several processes serve (see `shared_rate_limit`)."""
    graceful_timeout: int = 30
    """Seconds shutdown waits for in-flight requests."""
    shutdown_decode_s: float = 5.0
    """Seconds shutdown gives background OCR in progress; pages not read by then are read at
    the next start (`OpticalMemory.resume_decoding`)."""
    log_level: str = "info"

    @classmethod
    def from_env(
        cls, environ: os._Environ[str] | dict[str, str] | None = None, /, **overrides: Any
    ) -> Settings:
        """Defaults, then `OPTIMEM_*` variables, then explicit `overrides` (None means unset)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.type, raw, f.name)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """These settings as `OPTIMEM_*` variables (how worker processes receive them)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[ENV_PREFIX + f.name.upper()] = str(int(value) if isinstance(value, bool) else value)
        return out

    @property
    def shared_rate_limit(self) -> bool:
        """Count requests in the database, which every worker and replica sees: with several
        workers or on PostgreSQL (where replicas share it). One SQLite process counts in memory,
        so a request never waits on the file's write lock for its count."""
        return self.rate_per_minute > 0 and (
            self.workers > 1 or self.db.startswith(("postgresql://", "postgres://"))
        )

    @property
    def auth_enabled(self) -> bool:
        return self.keys is not None

    def check(self) -> None:
        """Raise ValueError for settings the service must not start with."""
        if not self.auth_enabled and not self.insecure_no_auth and not is_loopback(self.host):
            raise ValueError(
                f"refusing to serve {self.host} without API keys: pass --keys FILE "
                "(create keys with `optimem keys add TENANT`) or --insecure-no-auth"
            )
        if self.metrics_key is not None and len(self.metrics_key) < 16:
            raise ValueError("metrics_key must be at least 16 characters (e.g. `openssl rand -hex 24`)")
        if self.workers < 1:
            raise ValueError("workers must be ≥ 1")
        if self.decode not in ("background", "now", "lazy", "queue"):
            raise ValueError(f"decode must be background, now, lazy or queue, got {self.decode!r}")
        if self.decode == "queue" and not self.db.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "decode=queue needs a PostgreSQL database (--db postgresql://…): workers share it"
            )
        for name in ("max_body_bytes", "max_turns_per_request", "max_pages_per_recall", "max_recall_hits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1")
        if self.shutdown_decode_s < 0:
            raise ValueError("shutdown_decode_s must be ≥ 0")
        if self.rate_per_minute < 0:
            raise ValueError("rate_per_minute must be ≥ 0 (0 turns the limit off)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse(kind: Any, raw: str, name: str) -> Any:
    text = str(kind)
    try:
        if text == "bool":
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {text}") from None
    return raw
