"""The `optimem` command: parses options, calls the library, prints. Nothing else.

Library errors become one clean line here and nowhere else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..backends import DEFAULT_BACKEND
from ..errors import SessionNotFound
from ..turns import load_chat
from .errors import clean_errors as _clean_errors
from .worker import worker_command

DB_ENV = "OPTIMEM_DB"


def _memory(db: str, backend: str, policy: str | None = None, **kwargs: Any):
    from ..memory import OpticalMemory

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
@click.option(
    "--keep-recent",
    type=click.IntRange(min=0),
    default=None,
    help="Keep the newest N turns as text (implies --no-flush).  [default: page every turn]",
)
@click.option(
    "--flush/--no-flush",
    default=None,
    help="Page the newest turns too.  [default: --flush, or --no-flush with --keep-recent]",
)
@_clean_errors
def compress(
    chat_file: Path,
    db: str,
    session: str,
    backend: str,
    policy: str,
    keep_recent: int | None,
    flush: bool | None,
) -> None:
    """Add the turns of CHAT_FILE to a session and compress them into pages, then read each page
    once with the OCR backend (so later recalls read the cache)."""
    if flush is None:
        flush = keep_recent is None
    turns = load_chat(chat_file)
    keep = 6 if keep_recent is None else keep_recent
    with _memory(db, backend, policy, keep_recent_turns=keep, decode="lazy") as mem:
        s = mem.session(session)
        ids = s.add_turns(turns, skip_existing=True)
        result = s.compress(flush=flush)
        click.echo(
            f"added {len(ids)} turns; {len(result.created)} pages created, {len(result.aged)} aged; "
            f"context {result.tokens_before} → {result.tokens_after} tokens"
        )
        _read_pages(s, backend)
        st = s.stats()
        _print_pages(s)
        click.echo(
            f"text tokens {st.text_tokens}, model sees {st.context_tokens} "
            f"({st.savings:.1f}x fewer); pages compress {st.compression:.1f}x"
        )


def _read_pages(s, backend: str) -> None:
    """Read every page once, showing progress: OCR takes seconds a page on a CPU."""
    from tqdm import tqdm

    pages = s.pages()
    if not pages:
        return
    click.echo(f"reading {len(pages)} pages with {backend} (OCR, seconds a page on a CPU)…", err=True)
    for p in tqdm(pages, desc="pages read", unit="page", file=sys.stderr, disable=None, leave=False):
        s.recall_page(p.id)


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
    if page_id is None and query is None:
        raise click.UsageError(
            "say what to recall: a PAGE_ID (optimem recall 3) or --query TEXT (optimem recall -q 'cutover')"
        )
    if page_id is not None and query is not None:
        raise click.UsageError("give a PAGE_ID or --query, not both")
    _must_exist(db)
    with _memory(db, backend, decode="lazy") as mem:
        s = _existing(mem, session)
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
    _must_exist(db)
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


def _must_exist(db: str) -> None:
    """Reading commands never create a database: a mistyped or missing --db is an error."""
    if "://" in db or db == ":memory:":
        return
    path = Path(db.removeprefix("sqlite:///") if db.startswith("sqlite:///") else db)
    if not path.exists():
        raise click.ClickException(
            f"no database at {db} (give --db FILE or set ${DB_ENV}; `optimem compress` creates one)"
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
@backend_option
@_clean_errors
def page_png(page_id: int, out: Path, db: str, session: str, backend: str) -> None:
    """Write the image of PAGE_ID at its current mode as PNG (nothing is decoded)."""
    _must_exist(db)
    with _memory(db, backend) as mem:  # the backend is named, never loaded: no decode here
        found = _existing(mem, session)
        out.write_bytes(found.page_png(page_id))
        page = found.page(page_id)
        click.echo(f"wrote {out}: page {page.number} of {session!r} (id {page.id}), {page.mode.value}")


def _register_bench() -> None:
    try:
        from .bench import bench_command, demo_command
    except ImportError as exc:  # pragma: no cover - only in a broken install
        print(f"optimem: benchmark commands unavailable: {exc}", file=sys.stderr)
        return
    main.add_command(bench_command, "bench")
    main.add_command(demo_command, "demo")


_register_bench()
main.add_command(worker_command, "worker")


def _needs_extra(name: str, extra: str, exc: ImportError) -> click.Command:
    """A command that says which extra it needs, in place of one whose imports failed: a
    missing extra must never make a command vanish from `optimem --help` without a word."""

    @click.command(
        name,
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        help=f"(needs: pip install 'optimem[{extra}]')",
    )
    def unavailable() -> None:
        raise click.ClickException(
            f"`optimem {name}` needs the {extra} extra: pip install 'optimem[{extra}]' ({exc})"
        )

    return unavailable


def _register_server() -> None:
    try:
        from .serve import keys_command, serve_command
    except ImportError as exc:  # the server extra is not installed
        main.add_command(_needs_extra("serve", "server", exc), "serve")
        main.add_command(_needs_extra("keys", "server", exc), "keys")
        return
    main.add_command(serve_command, "serve")
    main.add_command(keys_command, "keys")


_register_server()


def _register_mcp() -> None:
    try:
        from .mcp import mcp_command
    except ImportError as exc:  # the mcp extra (or the server extra it builds on) is not installed
        main.add_command(_needs_extra("mcp", "mcp", exc), "mcp")
        return
    main.add_command(mcp_command, "mcp")


_register_mcp()


if __name__ == "__main__":
    main()
