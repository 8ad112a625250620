"""The `optimem` command: parses options, calls the library, prints. Nothing else.

Library errors become one clean line here and nowhere else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .backends import DEFAULT_BACKEND
from .cli_errors import clean_errors as _clean_errors
from .errors import SessionNotFound
from .turns import load_chat
from .worker_cli import worker_command

DB_ENV = "OPTIMEM_DB"


def _memory(db: str, backend: str, policy: str | None = None, **kwargs: Any):
    from .memory import OpticalMemory

    return OpticalMemory(db, backend=backend, policy=policy, **kwargs)


db_option = click.option(
    "--db",
    default="optimem.db",
    envvar=DB_ENV,
    show_default=True,
    help=f"SQLite database file (or ${DB_ENV}).",
)
session_option = click.option("--session", "-s", default="default", show_default=True, help="Session id.")
backend_option = click.option(
    "--backend", "-b", default=DEFAULT_BACKEND, show_default=True, help="OCR backend that reads pages back."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="optimem")
def main() -> None:
    """Optical memory for chat agents: old turns become page images, read back by OCR."""


@main.command()
@click.argument("chat_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@db_option
@session_option
@backend_option
@click.option(
    "--policy",
    default="budget:4000",
    show_default=True,
    help="budget:N, budget:N:salient, turns, clock or none.",
)
@click.option("--keep-recent", default=6, show_default=True, help="Newest turns kept as text.")
@click.option("--flush/--no-flush", default=True, show_default=True, help="Page the newest turns too.")
@_clean_errors
def compress(
    chat_file: Path, db: str, session: str, backend: str, policy: str, keep_recent: int, flush: bool
) -> None:
    """Add the turns of CHAT_FILE to a session and compress them into pages."""
    turns = load_chat(chat_file)
    with _memory(db, backend, policy, keep_recent_turns=keep_recent, decode="now") as mem:
        s = mem.session(session)
        ids = s.add_turns(turns, skip_existing=True)
        result = s.compress(flush=flush)
        st = s.stats()
        click.echo(
            f"added {len(ids)} turns; {len(result.created)} pages created, {len(result.aged)} aged; "
            f"context {result.tokens_before} → {result.tokens_after} tokens"
        )
        _print_pages(s)
        click.echo(
            f"text tokens {st.text_tokens}, model sees {st.context_tokens} "
            f"({st.savings:.1f}x fewer); pages compress {st.compression:.1f}x"
        )


def _print_pages(s) -> None:
    """The session's pages: page and turn numbers in the session, and the page id commands take."""
    click.echo(
        f"{'page':>5} {'id':>7} {'mode':<7} {'turns':>11} {'text tok':>8} {'positions':>9} {'ratio':>6}"
    )
    for p in s.pages():
        first, last = p.turn_numbers
        span = f"{first}-{last}"
        click.echo(
            f"{p.number:>5} {p.id:>7} {p.mode.value:<7} {span:>11} {p.text_tokens:>8} {p.positions:>9}"
            f" {p.compression:>5.1f}x"
        )


@main.command()
@click.argument("page_id", type=int, required=False)
@click.option("--query", "-q", help="Search pages instead of reading one.")
@click.option("--limit", default=5, show_default=True, help="Hits to show with --query.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@db_option
@session_option
@backend_option
@_clean_errors
def recall(
    page_id: int | None, query: str | None, limit: int, as_json: bool, db: str, session: str, backend: str
) -> None:
    """Print the recalled text of PAGE_ID, or search pages with --query."""
    if (page_id is None) == (query is None):
        raise click.UsageError("give a PAGE_ID or --query, not both")
    with _memory(db, backend, decode="lazy") as mem:
        s = mem.session(session)
        if query is not None:
            hits = s.search(query, limit=limit, wait=True)  # one-shot: decode what is missing now
            if as_json:
                click.echo(json.dumps([h.to_dict() for h in hits], ensure_ascii=False))
            numbers = {p.id: p.number for p in s.pages()} if hits and not as_json else {}
            for h in hits if not as_json else []:
                click.echo(
                    f"page {numbers.get(h.page_id, '?')} (id {h.page_id}, {h.mode.value}, score {h.score:.2f}):"
                    f" {h.snippet}"
                )
            if not hits and not as_json:
                click.echo("no page matches")
            return
        r = s.recall_page(page_id)
        if as_json:
            click.echo(json.dumps(r.to_dict(), ensure_ascii=False))
        else:
            click.echo(r.text)


@main.command()
@db_option
@session_option
@backend_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_clean_errors
def stats(db: str, session: str, backend: str, as_json: bool) -> None:
    """Token accounting of a session: text tokens against positions, per mode.

    Pages are priced by BACKEND's model (its positions); nothing is decoded or loaded.
    """
    with _memory(db, backend) as mem:
        s = _existing(mem, session)
        st = s.stats()
        if as_json:
            click.echo(json.dumps(st.to_dict()))
            return
        _print_pages(s)
        click.echo(
            f"{st.turns} turns, {st.text_tokens} text tokens; model sees {st.context_tokens} "
            f"({st.savings:.1f}x fewer)"
        )


def _existing(mem, session: str):
    if not mem.has_session(session):
        raise SessionNotFound(f"no session {session!r} in this database")
    return mem.session(session)


@main.command("page")
@click.argument("page_id", type=int)
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True)
@db_option
@session_option
@_clean_errors
def page_png(page_id: int, out: Path, db: str, session: str) -> None:
    """Write the image of PAGE_ID at its current mode as PNG."""
    with _memory(db, DEFAULT_BACKEND) as mem:  # the backend is never loaded: no decode here
        found = _existing(mem, session)
        out.write_bytes(found.page_png(page_id))
        page = found.page(page_id)
        click.echo(f"wrote {out}: page {page.number} of {session!r} (id {page.id}), {page.mode.value}")


def _register_bench() -> None:
    try:
        from .bench.cli import bench_command, demo_command
    except ImportError as exc:  # pragma: no cover - only in a broken install
        print(f"optimem: benchmark commands unavailable: {exc}", file=sys.stderr)
        return
    main.add_command(bench_command, "bench")
    main.add_command(demo_command, "demo")


_register_bench()
main.add_command(worker_command, "worker")


def _register_server() -> None:
    try:
        from server.cli import keys_command, serve_command
    except ImportError:  # the server package or its extra is not installed
        return
    main.add_command(serve_command, "serve")
    main.add_command(keys_command, "keys")


_register_server()


def _register_mcp() -> None:
    try:
        from .integrations.mcp.cli import mcp_command
    except ImportError:  # the server package (keys, settings) is not installed
        return
    main.add_command(mcp_command, "mcp")


_register_mcp()


if __name__ == "__main__":
    main()
