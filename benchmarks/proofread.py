"""Proofreading against line checks, side by side with the OCR alone: words, lines, speed.

Pages of a LoCoMo conversation are typeset at Small (8 px on 640 px by default; `--px` tries
denser type) and read as made and aged to Tiny (resized to 512 px) by the `cpu` backend, once
without reading aids (its length-based re-check, the default before line checks) and once
with them (each line read once and proofread; only lines proofreading cannot make pass are
read again by the other engine, then proofread from both readings). Same distinct pages
for every row. Reports character fidelity, word errors (the words an exact answer match
compares), lines exact, the side channel's share of the page text, and characters/s of the
whole uncached read (OCR + proofreading).

    python benchmarks/proofread.py ../shared/data/locomo/42.json --pages 4 --px 8,7 \
        --out benchmarks/results/proofread.json
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import sys
import time
from pathlib import Path

from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from line_recheck import page_input as recheck_page_input

from optimem.aids import linecheck
from optimem.aids.page_aids import page_aids
from optimem.aids.speller import speller
from optimem.backends.base import PageInput
from optimem.backends.cpu import CpuBackend
from optimem.bench.datasets import load
from optimem.bench.machine import cores, cpu_name
from optimem.layout import restore_placeholders
from optimem.modes import Mode
from optimem.pages.typeset import RenderOptions, TurnText, paginate
from optimem.reading import proofread
from optimem.reading.correction import SEARCH_LIMIT, STEPS
from optimem.reading.fidelity import fidelity


def pages_of(chat_path: str, n: int, px: int):
    chat = load(chat_path)
    turns = [TurnText(i, t.role, t.content, t.name) for i, t in enumerate(chat.turns)]
    pages = paginate(turns, RenderOptions(canvas=Mode.SMALL.canvas, font_px=px))
    step = max(1, len(pages) // n)
    labels = {t.turn_id: t.label.strip() for t in turns}
    return chat.name, pages[::step][:n], labels


def page_input(page, mode: Mode, checks: tuple[bytes, ...]) -> PageInput:
    """The page as aged to `mode` (line_recheck's reading of it), with its line checks."""
    return dataclasses.replace(recheck_page_input(page, mode), checks=checks)


def word_errors(reference: str, text: str) -> tuple[int, int]:
    want, got = linecheck.line_words(reference), linecheck.line_words(text)
    matcher = difflib.SequenceMatcher(None, want, got, autojunk=False)
    return len(want) - sum(b.size for b in matcher.get_matching_blocks()), len(want)


def read(page, mode: Mode, aids: proofread.ReadingAids | None, backend: CpuBackend) -> dict:
    drawn = [line.text for line in page.lines]
    pin = page_input(page, mode, aids.checks if aids else ())
    t0 = time.perf_counter()
    decoded = backend.decode(pin)
    lines = list(decoded.lines or ())
    if aids is not None:
        fixed = proofread.proofread(pin, decoded, aids, reread=functools.partial(backend.alternates, pin))
        lines = list(fixed.lines) if fixed else lines
    seconds = time.perf_counter() - t0
    text = restore_placeholders("\n".join(lines))
    reference = restore_placeholders("\n".join(drawn))
    errors, words = word_errors(reference, text)
    exact = sum(
        linecheck.line_words(a) == linecheck.line_words(b) for a, b in zip(lines, drawn, strict=False)
    )
    return {"fidelity": fidelity(text, reference), "errors": errors, "words": words, "exact": exact,
            "lines": len(drawn), "chars": len(reference), "seconds": seconds}  # fmt: skip


def ablate(chat: str, n_pages: int, px: int) -> list[dict]:
    """What each proofreading step adds on aged Tiny pages: the pages are read once (with their
    checks, so the re-check gives the other engine's readings), then proofread with every step,
    with each step left out, and with none (the reading as it came)."""
    _, pages, labels = pages_of(chat, n_pages, px)
    reads = []
    backend = CpuBackend()
    for page in pages:
        drawn = [line.text for line in page.lines]
        kept = page_aids(drawn, "\n".join(drawn))
        by_line = {i: labels[b.turn_id] for i, b in enumerate(page.lines) if b.start == 0}
        aids = proofread.ReadingAids.from_kept(kept, by_line)
        pin = page_input(page, Mode.TINY, aids.checks)
        decoded = backend.decode(pin)
        first = list(decoded.lines or ())
        misread = [
            i for i, (t, c) in enumerate(zip(first, aids.checks, strict=True)) if not linecheck.verified(t, c)
        ]
        others = backend.alternates(pin, misread, [first[i] for i in misread])  # read once, reused below
        reads.append((pin, decoded, aids, drawn, others))
    backend.close()
    variants = [("OCR, first reading only (no proofreading)", None, SEARCH_LIMIT),
                ("all steps", STEPS, SEARCH_LIMIT),
                ("all steps, no search (cheapest combination only)", STEPS, 1)]  # fmt: skip
    variants += [(f"without {step}", STEPS - {step}, SEARCH_LIMIT) for step in sorted(STEPS)]
    out = []
    for label, steps, limit in variants:
        errors = words = exact = lines = 0
        for pin, decoded, aids, drawn, others in reads:
            got = list(decoded.lines or ())
            if steps is not None:
                fixed = proofread.proofread(pin, decoded, aids, steps=steps, limit=limit,
                                            reread=lambda idx, _texts, o=others: {i: o.get(i, []) for i in idx})  # fmt: skip
                got = list(fixed.lines) if fixed else got
            e, w = word_errors("\n".join(drawn), "\n".join(got))
            errors, words = errors + e, words + w
            exact += sum(
                linecheck.line_words(a) == linecheck.line_words(b) for a, b in zip(got, drawn, strict=False)
            )
            lines += len(drawn)
        row = {
            "variant": label,
            "word_error_rate": round(errors / words, 4),
            "lines_exact": round(exact / lines, 4),
        }
        out.append(row)
        print(f"ablation (Tiny, {px} px made): {label:52} word errors {100 * row['word_error_rate']:.2f}%  "
              f"lines exact {100 * row['lines_exact']:.1f}%", flush=True)  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chat")
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--px", default="8", help="comma list of font sizes on the Small page")
    ap.add_argument(
        "--ablation",
        action="store_true",
        help="also proofread the aged Tiny pages with each step left out (one OCR pass)",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    t0 = time.perf_counter()
    speller()  # built once per process; not part of any page's time
    speller_s = time.perf_counter() - t0
    rows = []
    for px in [int(x) for x in args.px.split(",")]:
        name, pages, labels = pages_of(args.chat, args.pages, px)
        for mode in (Mode.SMALL, Mode.TINY):
            for aided in (False, True):
                backend = CpuBackend()
                got = []
                for page in pages:
                    aids = None
                    if aided:
                        drawn = [line.text for line in page.lines]
                        kept = page_aids(drawn, "\n".join(drawn))
                        by_line = {i: labels[b.turn_id] for i, b in enumerate(page.lines) if b.start == 0}
                        aids = proofread.ReadingAids.from_kept(kept, by_line)
                        side = len(kept.checks) + len(" ".join(kept.lexicon).encode())
                    got.append(read(page, mode, aids, backend) | ({"side": side} if aided else {}))
                backend.close()

                def n(key: str, got: list[dict] = got) -> float:
                    return sum(g[key] for g in got)

                row = {"px": px, "mode": mode.value, "px_read": round(px * mode.canvas / Mode.SMALL.canvas, 1),
                       "reading_aids": aided, "pages": len(got), "lines": n("lines"),
                       "fidelity": round(sum(g["fidelity"] for g in got) / len(got), 4),
                       "word_error_rate": round(n("errors") / n("words"), 4),
                       "lines_exact": round(n("exact") / n("lines"), 4),
                       "side_channel_share": round(n("side") / n("chars"), 4) if aided else 0.0,
                       "chars_per_s": round(n("chars") / n("seconds"), 1)}  # fmt: skip
                rows.append(row)
                print(f"{px} px {mode.value:5} ({row['px_read']} px) aids={aided!s:5} "
                      f"fidelity {100 * row['fidelity']:.2f}%  word errors {100 * row['word_error_rate']:.2f}%  "
                      f"lines exact {100 * row['lines_exact']:.1f}%  side channel {100 * row['side_channel_share']:.1f}%  "
                      f"{row['chars_per_s']:,.0f} chars/s", flush=True)  # fmt: skip
    ablation = ablate(args.chat, args.pages, int(args.px.split(",")[0])) if args.ablation else []
    doc = {"chat": name, "machine": f"{cpu_name()}, {cores()} cores", "decoder": "cpu",
           "pages": "distinct pages, evenly spread over the conversation; the same pages in every row",
           "speller_build_s": round(speller_s, 2), "rows": rows, "ablation": ablation}  # fmt: skip
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
