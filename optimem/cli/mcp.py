"""`optimem mcp`: parse options, open the memory, serve it over MCP. Loads the SDK only when run."""

from __future__ import annotations

import re

import click

from optimem.server.auth import KeysFile, KeysFileError, check_tenant
from optimem.server.settings import DEFAULT_HOST, Settings

from ..aging.pricing import CONSUMERS
from ..integrations.mcp import INSTALL_HINT
from .errors import clean_errors

DEFAULT_PORT = 8422
KEYS_ENV = "OPTIMEM_KEYS"


@click.command("mcp")
@click.option("--http", is_flag=True, help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio.")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to bind (--http).")
@click.option("--port", type=int, default=DEFAULT_PORT, show_default=True, help="Port (--http).")
@click.option(
    "--keys",
    default=None,
    help=f"Keys file of `optimem keys` (--http); without one, loopback only [${KEYS_ENV}].",
)
@click.option("--insecure-no-auth", is_flag=True, help="Serve a non-loopback address without keys (--http).")
@click.option(
    "--db", default=None, help="SQLite file or postgresql:// URL [default: optimem.db; $OPTIMEM_DB]."
)
@click.option("--backend", "-b", default=None, help="OCR backend [default: cpu; $OPTIMEM_BACKEND].")
@click.option("--policy", default=None, help="Aging policy [default: budget:4000; $OPTIMEM_POLICY].")
@click.option(
    "--decode",
    type=click.Choice(["background", "now", "lazy", "queue"]),
    default=None,
    help="When pages are OCRed [default: background; $OPTIMEM_DECODE].",
)
@click.option("--rehearse", is_flag=True, default=None, help="Sharpen a page one rung when it is recalled.")
@click.option(
    "--session", "-s", default="default", show_default=True, help="Session the tools use by default."
)
@click.option(
    "--tenant",
    default=None,
    help="Without keys, see only this tenant's sessions (ids 'TENANT/…') [default: every session, by full id].",
)
@click.option(
    "--consumer",
    type=click.Choice(list(CONSUMERS)),
    default=None,
    help="Price page images as this model family does (e.g. anthropic for Claude) [default: decoder positions].",
)
@click.option("--budget", default=4000, show_default=True, help="Default token budget of the context tool.")
@click.option(
    "--rate-per-minute",
    type=int,
    default=None,
    help="Tool calls per key per minute over HTTP (0: off) [600].",
)
@click.option("--log-level", default="warning", show_default=True, help="Log level (stderr).")
@clean_errors
def mcp_command(
    http: bool,
    keys: str | None,
    insecure_no_auth: bool,
    session: str,
    tenant: str | None,
    consumer: str | None,
    budget: int,
    **options: object,
) -> None:
    """Run optimem as an MCP server (stdio by default; --http for streamable HTTP).

    Tools: remember, compress, recall, search, context, stats, sessions. Resources:
    optimem://sessions/{session}/pages/{n}.png and .txt. Over HTTP, keys and tenants are those
    of `optimem serve`.
    """
    try:
        from optimem.server.schemas import SESSION_ID_PATTERN, SESSION_ID_RULE

        from ..integrations.mcp.server import McpConfig, create_server, run
        from ..memory import OpticalMemory
    except ImportError as exc:
        raise click.ClickException(f"{INSTALL_HINT} ({exc})") from None
    if not http and keys:
        raise click.UsageError("--keys applies to --http only (stdio serves one local user)")
    if not re.fullmatch(SESSION_ID_PATTERN, session):
        raise click.BadParameter(f"{session!r}: {SESSION_ID_RULE}", param_hint="--session")
    if budget < 1:
        raise click.BadParameter("must be ≥ 1", param_hint="--budget")
    try:
        if tenant is not None:
            check_tenant(tenant)
        settings = Settings.from_env(keys=keys, insecure_no_auth=insecure_no_auth or None, **options)
        if not http:
            settings = settings.model_copy(update={"keys": None})
        settings.check()
        if settings.keys is not None:
            n = sum(r.active for r in KeysFile(settings.keys).records())
    except (ValueError, KeysFileError) as exc:
        raise click.ClickException(str(exc)) from exc
    if http:
        auth = (
            f"{n} active key(s) in {settings.keys}"
            if settings.keys
            else (
                f"off; every caller is tenant {tenant!r}"
                if tenant
                else "off; every caller sees every session"
            )
        )
        click.echo(f"optimem mcp: http://{settings.host}:{settings.port}/mcp, auth {auth}", err=True)
    config = McpConfig(settings, http=http, session=session, tenant=tenant, budget_tokens=budget)
    with OpticalMemory(
        settings.db,
        backend=settings.backend,
        policy=settings.policy,
        decode=settings.decode,
        rehearse=settings.rehearse,
        consumer=consumer,
    ) as memory:
        run(create_server(memory, config), config)
