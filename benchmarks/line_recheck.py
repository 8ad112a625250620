"""Misread-line re-check of the `cpu` backend, side by side: fidelity and characters/s.

Pages of a LoCoMo conversation typeset at Small (8 px on 640 px) are read as made and aged
to Tiny (resized to 512 px), by `cpu` with and without the re-check (a line whose reading
does not fit its known character count is re-read by the other engine).

    python benchmarks/line_recheck.py ../shared/data/locomo/conv-26.json --pages 3 --out out/recheck.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from optimem.backends.base import PageInput
from optimem.backends.cpu import CpuBackend
from optimem.bench.datasets import load
from optimem.bench.machine import cores, cpu_name
from optimem.layout import restore_placeholders
from optimem.modes import Mode
from optimem.pages.typeset import RenderOptions, TurnText, paginate, resize_to
from optimem.reading.fidelity import fidelity


def pages_of(chat_path: str, n: int, px: int = 8):
    chat = load(chat_path)
    turns = [TurnText(i, t.role, t.content, t.name) for i, t in enumerate(chat.turns)]
    pages = paginate(turns, RenderOptions(canvas=Mode.SMALL.canvas, font_px=px))
    step = max(1, len(pages) // n)
    return chat.name, pages[::step][:n]


def page_input(page, mode: Mode) -> PageInput:
    factor = mode.canvas / page.options.canvas
    return PageInput(
        resize_to(page.image, mode.canvas),
        mode,
        tuple(line.scaled(factor) for line in page.lines),
        page.options.font_px * factor,
        page.has_cjk,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("chat")
    ap.add_argument("--pages", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    name, pages = pages_of(args.chat, args.pages)
    rows = []
    for mode in (Mode.SMALL, Mode.TINY):
        for recheck in (False, True):
            backend = CpuBackend(recheck=recheck)
            fids, chars, secs, checked, replaced = [], 0, 0.0, 0, 0
            for page in pages:
                ref = restore_placeholders("\n".join(line.text for line in page.lines))
                t0 = time.perf_counter()
                d = backend.decode(page_input(page, mode))
                secs += time.perf_counter() - t0
                fids.append(fidelity(restore_placeholders(d.text), ref))
                chars += len(ref)
                checked += d.extra.get("rechecked_lines", 0)
                replaced += d.extra.get("replaced_lines", 0)
            lines = sum(len(p.lines) for p in pages)
            rows.append({"mode": mode.value, "recheck": recheck, "pages": len(pages), "lines": lines,
                         "fidelity": round(sum(fids) / len(fids), 4), "chars_per_s": round(chars / secs, 1),
                         "rechecked_lines": checked, "replaced_lines": replaced})  # fmt: skip
            backend.close()
            r = rows[-1]
            print(f"{r['mode']:5} recheck={recheck!s:5} fidelity {100 * r['fidelity']:.2f}%  "
                  f"{r['chars_per_s']:,.0f} chars/s  re-read {checked}/{lines} lines, kept {replaced}")  # fmt: skip
    doc = {"chat": name, "machine": f"{cpu_name()}, {cores()} cores", "decoder": "cpu", "rows": rows}
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
