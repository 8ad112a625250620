"""The `optimem worker` command: parse options, run a decode worker until SIGTERM/SIGINT, print."""

from __future__ import annotations

import asyncio
import logging
import signal

import click

from .errors import clean_errors


@click.command("worker")
@click.option(
    "--db", required=True, envvar="OPTIMEM_DB", help="postgresql://… URL of the store (or $OPTIMEM_DB)."
)
@click.option("--backend", "-b", default="cpu", show_default=True, help="OCR backend: cpu, deepseek-ocr2, …")
@click.option(
    "--batch", default=8, show_default=True, type=click.IntRange(1), help="Most pages decoded at once."
)
@click.option(
    "--lease", default=30.0, show_default=True, help="Seconds before a dead worker's jobs are retried."
)
@click.option(
    "--device",
    default=None,
    help="Device for the backend, e.g. cuda:1 (run one worker per GPU). Default: the backend's choice.",
)
@click.option(
    "--warmup/--no-warmup",
    default=True,
    show_default=True,
    help="Compile and capture the decoder for batch 1 and --batch before reporting ready.",
)
@click.option("--max-pages", type=int, default=None, help="Exit after decoding this many pages.")
@click.option("--idle-exit", type=float, default=None, help="Exit after this many idle seconds.")
@click.option("--verbose", "-v", is_flag=True, help="Log every batch.")
@clean_errors
def worker_command(
    db: str,
    backend: str,
    batch: int,
    lease: float,
    device: str | None,
    warmup: bool,
    max_pages: int | None,
    idle_exit: float | None,
    verbose: bool,
) -> None:
    """Decode pages queued by replicas running with decode="queue" (PostgreSQL only)."""
    if not db.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter("workers share a PostgreSQL store: postgresql://…", param_hint="--db")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(message)s")
    try:
        from ..workers.worker import Worker
    except ImportError as exc:
        raise click.ClickException(f"the worker needs {exc.name}: pip install 'optimem[postgres]'") from exc
    options = {"device": device} if device else {}
    worker = Worker(db, backend, batch=batch, lease_s=lease, backend_options=options, warmup=warmup)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop.set)

        async def announce() -> None:
            while not worker.ready.is_set():
                await asyncio.sleep(0.02)
            warm = "" if worker.warmup_s is None else f", warmed up in {worker.warmup_s:.1f} s"
            where = f" on {device}" if device else ""
            click.echo(
                f"optimem worker: backend {worker.backend.name}{where}, batch {batch}{warm}, ready", err=True
            )

        announcer = asyncio.create_task(announce())
        stats = await worker.run(max_pages=max_pages, idle_exit_s=idle_exit)
        announcer.cancel()
        click.echo(
            f"optimem worker: {stats.pages} pages in {stats.batches} batches, {stats.failed} failed, "
            f"{stats.decode_seconds:.1f} s decoding",
            err=True,
        )

    try:
        asyncio.run(run())
    finally:
        worker.close()
