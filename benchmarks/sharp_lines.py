"""Sharp 8 px lines: tesseract at full size against the line model on the page shrunk, in one run.

The line model learnt optimem's 8 px type shrunk to 6.4 px, as one rung of aging shrinks it.
A sharp page of 8 px type (every mode but Tiny typesets at it) shrunk the same way
(`optimem.backends.line_model.at_model_size`) is what the model knows, so the `cpu` backend
reads the Latin prose lines of sharp pages with it too. This reads those lines of the first
pages of the embedded chat and of a LoCoMo conversation, typeset at each mode and never aged,
with each reader, and counts their raw output (no correction, no re-reading) against the
typeset text. Tiny pages (9 px type, hinted otherwise) are read too, to show why the model
is not given them:

    python benchmarks/sharp_lines.py --out benchmarks/results/sharp_lines.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

ROOT = Path(__file__).resolve().parents[1]
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "42.json"


def pages(turns, mode, limit: int):
    """The first `limit` pages of `turns` typeset at `mode`, as a decoder sees them."""
    from optimem import OpticalMemory
    from optimem.aging.policies import NoAging

    with tempfile.TemporaryDirectory() as tmp:
        mem = OpticalMemory(
            Path(tmp) / "m.db", backend="cpu", decode="lazy", policy=NoAging(), creation_mode=mode
        )
        session = mem.session("s")
        session.add_turns([(t.role, t.content) for t in turns])
        session.compress(flush=True)
        out = [mem.decoder.page_input(mem.store.page("s", p.id)) for p in session.pages()[:limit]]
        mem.close()
    return out


def read(page_inputs, model, tesseract) -> dict:
    """Each reader over the Latin prose lines of `page_inputs`: seconds, lines right, fidelity."""
    from optimem.aids.linecheck import line_words
    from optimem.backends import _lines
    from optimem.backends.base import lines_subset
    from optimem.backends.line_model import at_model_size, cut_line
    from optimem.reading.fidelity import fidelity

    rows = {"tesseract (full size)": [0.0, 0, [], 0], "line model (page shrunk)": [0.0, 0, [], 0]}
    for page in page_inputs:
        idx = [
            i for i, b in enumerate(page.lines) if b.kind == "text" and not _lines.line_em(b, page.font_px)[1]
        ]
        if not idx:
            continue
        truth = [page.lines[i].text.strip() for i in idx]
        t0 = time.perf_counter()
        tess = list(tesseract.decode(lines_subset(page, idx)).lines)
        t_tess = time.perf_counter() - t0
        t0 = time.perf_counter()
        small = at_model_size(page)
        gray = _lines.as_gray(small.image)
        crops = [cut_line(gray, small.lines[i], small.font_px) for i in idx]
        fits = [model.fits(c) for c in crops]
        texts = iter(model.read([c for c, ok in zip(crops, fits, strict=True) if ok])[0])
        ours = [next(texts) if ok else "" for ok in fits]
        t_model = time.perf_counter() - t0
        for name, got, seconds in (
            ("tesseract (full size)", tess, t_tess),
            ("line model (page shrunk)", ours, t_model),
        ):
            row = rows[name]
            row[0] += seconds
            row[1] += sum(line_words(g) == line_words(w) for g, w in zip(got, truth, strict=True))
            row[2] += [fidelity(g, w) for g, w in zip(got, truth, strict=True)]
            row[3] += sum(g.strip() == w for g, w in zip(got, truth, strict=True))
    n = len(next(iter(rows.values()))[2])
    return {
        name: {
            "lines": n,
            "ms_per_line": round(1000 * s / max(1, n), 1),
            "lines_words_right": right,
            "lines_exact": exact,
            "fidelity": round(statistics.fmean(fids), 4) if fids else None,
        }
        for name, (s, right, fids, exact) in rows.items()
    }


def main() -> None:
    from optimem.backends.line_model import LineModel
    from optimem.backends.tesseract import TesseractBackend
    from optimem.bench.datasets import load, load_default
    from optimem.bench.machine import describe
    from optimem.modes import Mode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=4, help="pages per chat and mode")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    model, tesseract = LineModel(threads=2), TesseractBackend()
    chats = {
        "embedded chat": load_default().turns,
        "LoCoMo 42 (first 150 turns)": load(str(LOCOMO)).turns[:150],
    }
    results = []
    for chat, turns in chats.items():
        for mode in (Mode.GUNDAM, Mode.BASE, Mode.SMALL, Mode.TINY):
            page_inputs = pages(turns, mode, args.pages)
            read(page_inputs[:1], model, tesseract)  # first runs outside the timing
            for reader, row in read(page_inputs, model, tesseract).items():
                results.append(
                    {
                        "chat": chat,
                        "mode": mode.value,
                        "font_px": page_inputs[0].font_px,
                        "reader": reader,
                        **row,
                    }
                )
                print(f"{chat:28} {mode.value:7} {reader:26} {row['lines']:4d} lines {row['ms_per_line']:6.1f} ms/line  "
                      f"words right {row['lines_words_right']:4d}  exact {row['lines_exact']:4d}  fidelity {100 * row['fidelity']:.2f}%")  # fmt: skip
    doc = {
        "machine": describe() + "; onnxruntime 2 threads, tesseract as the cpu backend runs it",
        "inputs": f"the first {args.pages} pages of each chat typeset at each mode, never aged; their Latin prose "
        "lines; each reader's raw output (no correction, no re-reading); one timed pass after an untimed page",
        "rows": results,
    }
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
