"""`optimem bench` and `optimem demo`: parse options, run the benchmark, print and write.

The lead registers `bench_command` and `demo_command` in the `optimem` click group.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..aging.pricing import CONSUMERS
from ..backends import DEFAULT_BACKEND
from ..bench import datasets, report, runner
from ..memory import DEFAULT_CREATION_MODE
from ..modes import LADDER, Mode
from .errors import clean_errors as _clean_errors


def _modes(value: str) -> tuple[Mode, ...]:
    if value.strip().lower() in ("", "none"):
        return ()
    if value.strip().lower() == "all":
        return LADDER
    return tuple(dict.fromkeys(Mode.parse(v.strip()) for v in value.split(",") if v.strip()))


def _consumers(value: str) -> tuple[str, ...]:
    if value.strip().lower() == "all":
        return tuple(CONSUMERS)
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    for n in names:
        if n not in CONSUMERS:
            raise click.BadParameter(f"unknown consumer {n!r}; choose from {', '.join(CONSUMERS)}")
    return names


#: The demo keeps the 16k-token default chat within 2,000 tokens, so pages really age.
DEMO_BUDGET = 2000


def _common(fn=None, *, budget: int = 4000):
    """Options shared by bench and demo."""
    if fn is None:
        return lambda f: _common(f, budget=budget)
    options = [
        click.option(
            "--budget", default=budget, show_default=True, type=click.IntRange(min=1),
            help="Token budget of the default policy (BudgetPolicy) and of the sliding-window baseline.",
        ),
        click.option(
            "--modes", default="all", show_default=True,
            help="Fixed modes to replay besides the budget policy: comma list (gundam,large,base,small,tiny), all or none.",
        ),
        click.option(
            "--pages-per-mode", default=3, show_default=True, type=click.IntRange(min=0),
            help="Pages decoded per fixed-mode run, evenly spread (0: all). The budget run decodes every page.",
        ),
        click.option("--limit-turns", type=click.IntRange(min=1), default=None, help="Replay only the first N turns of each chat."),
        click.option(
            "--creation-mode", default=DEFAULT_CREATION_MODE.value, show_default=True,
            type=click.Choice([m.value for m in LADDER], case_sensitive=False),
            help="Mode the budget run typesets pages at; they age down the ladder from there.",
        ),
        click.option("--keep-recent", default=6, show_default=True, type=click.IntRange(min=0), help="Newest turns compress() leaves as text."),
        click.option(
            "--encoding", default="cl100k_base", show_default=True,
            help="Extra tiktoken encoding for a second text-token column (o200k_base is always counted), or none.",
        ),
        click.option("--consumers", default="all", show_default=True,
                     help=f"Models whose image-token rules to report: comma list of {', '.join(CONSUMERS)}, or all."),
        click.option(
            "--allow-test-double", is_flag=True,
            help="Allow the 'test-double' backend (reads the layout, not pixels): a plumbing check, never a measurement.",
        ),
        click.option(
            "--target-savings", default="", show_default=False,
            help="Strict runs: comma list of savings targets (e.g. 10,20); each replays every chat at a budget "
                 "of its text tokens ÷ target and scores exact answers, in context and by recall.",
        ),
        click.option(
            "--reading-aids/--no-reading-aids", default=True, show_default=True,
            help="Pages keep line checks and rare words, and recall proofreads against them; "
                 "--no-reading-aids measures the OCR alone.",
        ),
        click.option(
            "--jobs", "-j", type=click.IntRange(min=1), default=None,
            help="Processes that read pages while the chats are replayed [default: one per core]; "
                 "1 reads every page in this process. GPU backends always read in this process.",
        ),
        click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr."),
        click.option("--plots/--no-plots", default=True, show_default=True, help="Write PNG plots beside the JSON."),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _config(backend: str, budget: int, modes: str, pages_per_mode: int, limit_turns: int | None,
            keep_recent: int, creation_mode: str, encoding: str, consumers: str, allow_test_double: bool,
            progress: bool, target_savings: str = "", reading_aids: bool = True,
            jobs: int | None = None) -> runner.BenchConfig:  # fmt: skip
    return runner.BenchConfig(
        backend=backend,
        budget_tokens=budget,
        modes=_modes(modes),
        pages_per_mode=pages_per_mode,
        limit_turns=limit_turns,
        keep_recent_turns=keep_recent,
        creation_mode=Mode.parse(creation_mode),
        extra_encoding=None if encoding.lower() == "none" else encoding,
        consumers=_consumers(consumers),
        allow_test_double=allow_test_double,
        progress=progress,
        target_savings=_targets(target_savings),
        reading_aids=reading_aids,
        jobs=jobs,
    )


def _targets(value: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"--target-savings takes numbers like 10,20, got {value!r}") from exc


def _finish(doc: dict[str, Any], out: Path | None, plots: bool, json_path: str | None) -> None:
    if json_path == "-":
        click.echo(json.dumps(doc, indent=1, ensure_ascii=False))
    else:
        click.echo(report.format_table(doc))
    if json_path and json_path != "-":
        Path(json_path).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_path}", err=True)
    if out is not None:
        written = report.write_all(doc, out, plots=plots)
        for path in written.values():
            click.echo(f"wrote {path}", err=True)


@click.command("bench")
@click.argument("chats", nargs=-1)
@click.option(
    "--backend", "-b", default=DEFAULT_BACKEND, show_default=True, help="OCR backend that reads pages back."
)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for bench.json, bench.md and the PNG plots.")  # fmt: skip
@click.option(
    "--json",
    "json_path",
    default=None,
    help="Also write the JSON here ('-': print JSON instead of the table).",
)
@_common
@_clean_errors
def bench_command(chats: tuple[str, ...], backend: str, out: Path | None, json_path: str | None,
                  plots: bool, **options: Any) -> None:  # fmt: skip
    """Benchmark token savings and recall on chats.

    CHATS are LoCoMo JSON files, plain chat JSON files ({"turns": [{"role", "content"}]}),
    folders of them, or "default" (the embedded chat; also used when none is given). Each
    chat is replayed turn by turn under the budget policy and under each fixed mode, next to
    the full history, a sliding window of the same budget and recall from the text archive.
    """
    cfg = _config(backend, **options)
    doc = runner.run(datasets.load_many(list(chats)), cfg)
    _finish(doc, out, plots, json_path)


@click.command("demo")
@click.option(
    "--backend", "-b", default=DEFAULT_BACKEND, show_default=True, help="OCR backend that reads pages back."
)
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("optimem-demo"),
              show_default=True, help="Folder for bench.json, bench.md and the PNG plots.")  # fmt: skip
@_common(budget=DEMO_BUDGET)
@_clean_errors
def demo_command(backend: str, out: Path, plots: bool, **options: Any) -> None:
    """Benchmark the embedded default chat on the CPU OCR backend.

    Prints the table and writes bench.json, bench.md and PNG plots into --out. With the
    defaults (cpu backend, a 2,000-token budget so pages age, 3 pages per fixed mode) it
    takes about two minutes on two cores.
    """
    cfg = _config(backend, **options)
    doc = runner.run([datasets.load_default()], cfg)
    _finish(doc, out, plots, None)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def _standalone() -> None:
    """optimem benchmark commands (run through `optimem bench` / `optimem demo`)."""


_standalone.add_command(bench_command)
_standalone.add_command(demo_command)

if __name__ == "__main__":
    _standalone()
