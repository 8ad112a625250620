"""`optimem serve` and `optimem keys`: click commands that `optimem.cli` registers."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..server.auth import KeysFile, KeysFileError
from ..server.settings import DEFAULT_HOST, DEFAULT_PORT, Settings

KEYS_ENV = "OPTIMEM_KEYS"


@click.command("serve")
@click.option("--host", default=None, help=f"Address to bind [default: {DEFAULT_HOST}; $OPTIMEM_HOST].")
@click.option("--port", type=int, default=None, help=f"Port [default: {DEFAULT_PORT}; $OPTIMEM_PORT].")
@click.option(
    "--db", default=None, help="SQLite file or postgresql:// URL [default: optimem.db; $OPTIMEM_DB]."
)
@click.option("--backend", "-b", default=None, help="OCR backend [default: cpu; $OPTIMEM_BACKEND].")
@click.option(
    "--policy",
    default=None,
    help="Aging policy, e.g. budget:4000:salient [default: budget:4000; $OPTIMEM_POLICY].",
)
@click.option(
    "--rehearse",
    is_flag=True,
    default=None,
    help="Sharpen a page one rung from the archive when it is recalled by id [$OPTIMEM_REHEARSE].",
)
@click.option(
    "--decode",
    type=click.Choice(["background", "now", "lazy", "queue"]),
    default=None,
    help="When pages are OCRed (queue: by `optimem worker` processes; PostgreSQL only).",
)
@click.option("--workers", type=int, default=None, help="Worker processes [default: 1; $OPTIMEM_WORKERS].")
@click.option(
    "--decode-workers",
    type=int,
    default=None,
    help="Pages read at once in the background [default: 1; $OPTIMEM_DECODE_WORKERS].",
)
@click.option(
    "--decode-pool",
    type=click.Choice(["threads", "processes"]),
    default=None,
    help="Background reading on threads, or in a worker process each [default: threads].",
)
@click.option("--keys", "keys", default=None, help=f"Keys file; without one there is no auth [${KEYS_ENV}].")
@click.option(
    "--insecure-no-auth", is_flag=True, default=None, help="Serve a non-loopback address without keys."
)
@click.option(
    "--metrics-key",
    default=None,
    help="With --keys: the bearer key GET /metrics needs [$OPTIMEM_METRICS_KEY, better: not on a command line].",
)
@click.option("--rate-per-minute", type=int, default=None, help="Requests per key per minute (0: off).")
@click.option("--max-body-bytes", type=int, default=None, help="Largest request body.")
@click.option("--max-pages-per-recall", type=int, default=None, help="Most page ids in one recall.")
@click.option(
    "--warmup/--no-warmup",
    default=None,
    help="Compile the GPU decoder before /readyz answers [default: on; $OPTIMEM_WARMUP].",
)
@click.option("--log-level", default=None, help="uvicorn log level [default: info].")
def serve_command(**options: object) -> None:
    """Run the REST service (FastAPI under uvicorn): /v1, /docs, /healthz, /readyz, /metrics."""
    try:
        import uvicorn
    except ImportError:  # pragma: no cover - only without the extra
        raise click.ClickException("the service needs its extra: pip install 'optimem[server]'") from None
    if not options.get("insecure_no_auth"):
        options["insecure_no_auth"] = None  # an absent flag leaves $OPTIMEM_INSECURE_NO_AUTH alone
    try:
        settings = Settings.from_env(**options)
        settings.check()
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if settings.keys is not None:
        try:
            n = sum(r.active for r in KeysFile(settings.keys).records())
        except KeysFileError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"auth: {n} active key(s) in {settings.keys}", err=True)
    else:
        click.echo("auth: off (no keys file); every caller sees every session (docs/tenancy.md)", err=True)
    os.environ.update(settings.to_env())  # worker processes read their settings from here
    uvicorn.run(
        "optimem.server.main:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.graceful_timeout,
    )


keys_option = click.option(
    "--keys",
    "keys_path",
    default="optimem-keys.json",
    envvar=KEYS_ENV,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Keys file (or ${KEYS_ENV}).",
)


@click.group("keys")
def keys_command() -> None:
    """Manage API keys: each key belongs to one tenant; the file keeps only hashes."""


@keys_command.command("add")
@click.argument("tenant")
@click.option("--label", default="", help="A note to recognise the key by.")
@keys_option
def keys_add(tenant: str, label: str, keys_path: Path) -> None:
    """Create a key for TENANT and print it (it is shown only this once)."""
    try:
        record, key = KeysFile(keys_path).add(tenant, label)
    except KeysFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"key {record.id} for tenant {record.tenant} (store it now, it is not kept):", err=True)
    click.echo(key)


@keys_command.command("list")
@keys_option
def keys_list(keys_path: Path) -> None:
    """List keys: id, tenant, created, revoked, label (never the keys)."""
    try:
        records = KeysFile(keys_path).records()
    except KeysFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{'id':<9} {'tenant':<20} {'created':<26} {'revoked':<26} label")
    for r in records:
        click.echo(f"{r.id:<9} {r.tenant:<20} {r.created_at:<26} {r.revoked_at or '-':<26} {r.label}")


@keys_command.command("revoke")
@click.argument("key_id")
@keys_option
def keys_revoke(key_id: str, keys_path: Path) -> None:
    """Revoke the key KEY_ID (a running service refuses it from the next request)."""
    try:
        record = KeysFile(keys_path).revoke(key_id)
    except KeysFileError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"revoked key {record.id} of tenant {record.tenant} at {record.revoked_at}")
