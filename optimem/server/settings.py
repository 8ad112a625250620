"""The service's settings: one frozen pydantic-settings model, read from options or `OPTIMEM_*`
variables (each field `f` from `OPTIMEM_F`), validated once at start."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "OPTIMEM_"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8421


class Settings(BaseSettings):
    """How `optimem serve` runs. Every field can come from `OPTIMEM_<FIELD>` (upper case);
    `Settings()` reads the process's environment, `Settings.from_env(mapping)` only `mapping`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
    )

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
    decode_workers: int = 1
    """Pages read at once in the background (threads, or processes with `decode_pool`)."""
    decode_pool: Literal["threads", "processes"] = "threads"
    """Background reading on threads, or in a worker process each (see `OpticalMemory`)."""
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
    def from_env(cls, environ: Mapping[str, str] | None = None, /, **overrides: Any) -> Settings:
        """Defaults, then `OPTIMEM_*` variables of `environ` (default: the process's), then
        explicit `overrides` (None means unset)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if environ is None:
            return cls(**given)
        found = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.startswith(ENV_PREFIX)
            and value != ""
            and key[len(ENV_PREFIX) :].lower() in cls.model_fields
        }
        return cls.model_validate({**found, **given})

    def to_env(self) -> dict[str, str]:
        """These settings as `OPTIMEM_*` variables (how worker processes receive them)."""
        return {
            ENV_PREFIX + name.upper(): str(int(value) if isinstance(value, bool) else value)
            for name, value in self.model_dump().items()
            if value is not None
        }

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
        if self.workers < 1 or self.decode_workers < 1:
            raise ValueError("workers and decode_workers must be ≥ 1")
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
