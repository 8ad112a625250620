"""How code comes back: word recall, brackets and operators, indentation, per engine.

Renders each snippet of a held-out corpus (benchmarks/data/code_corpus.json: Python,
JavaScript, Rust, SQL, Go, shell output, a markdown table; written for this project, not
used to tune anything) as one chat turn on a Small page (8 px), reads it back as made and
aged to Tiny with each CPU engine, and scores the code lines against what was typeset.

    python benchmarks/code_recall.py --out out/code_recall.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from rapidfuzz.distance import Levenshtein

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate import _cores, _cpu_name
from line_recheck import page_input

from optimem.backends import get_backend
from optimem.metrics import fidelity
from optimem.modes import Mode
from optimem.render import RenderOptions, TurnText, paginate

CORPUS = Path(__file__).parent / "data" / "code_corpus.json"
SYMBOLS = set("()[]{}<>=+-*/:;,.'\"|&!%$#@_\\")


def score_lines(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Word recall, symbol recall and exact indentation over (typeset, read) line pairs."""
    words = found = sym = sym_ok = indent_ok = 0
    for src, got in pairs:
        want = Counter(src.split())
        have = Counter(got.split())
        words += sum(want.values())
        found += sum((want & have).values())
        a, b = src.strip(), got.strip()
        sym += sum(c in SYMBOLS for c in a)
        for tag, a0, a1, _, _ in Levenshtein.opcodes(a, b):
            if tag == "equal":
                sym_ok += sum(c in SYMBOLS for c in a[a0:a1])
        indent_ok += (len(src) - len(src.lstrip(" "))) == (len(got) - len(got.lstrip(" ")))
    return {
        "word_recall": round(found / words, 4) if words else None,
        "symbol_recall": round(sym_ok / sym, 4) if sym else None,
        "indent_exact": round(indent_ok / len(pairs), 4) if pairs else None,
        "lines": len(pairs),
        "words": words,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="tesseract,rapidocr,cpu")
    ap.add_argument("--px", type=int, default=8)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    snippets = json.loads(CORPUS.read_text())["snippets"]
    pages = [
        p
        for i, s in enumerate(snippets)
        for p in paginate([TurnText(i, "assistant", s["text"])], RenderOptions(canvas=640, font_px=args.px))
    ]
    rows = []
    for name in args.backends.split(","):
        backend = get_backend(name)
        for mode in (Mode.SMALL, Mode.TINY):
            pairs, fids, chars, secs = [], [], 0, 0.0
            for page in pages:
                t0 = time.perf_counter()
                d = backend.decode(page_input(page, mode))
                secs += time.perf_counter() - t0
                fids.append(fidelity(d.text, page.text))
                chars += len(page.text)
                pairs += [
                    (b.text, r) for b, r in zip(page.lines, d.lines or (), strict=False) if b.kind == "code"
                ]
                pairs += [
                    (b.text, r) for b, r in zip(page.lines, d.lines or (), strict=False) if "|" in b.text
                ]
            row = {"backend": name, "mode": mode.value, "font_px": args.px, **score_lines(pairs),
                   "fidelity": round(sum(fids) / len(fids), 4), "chars_per_s": round(chars / secs, 1)}  # fmt: skip
            rows.append(row)
            print(f"{name:9} {mode.value:5} words {100 * row['word_recall']:.1f}%  symbols "
                  f"{100 * row['symbol_recall']:.1f}%  indent {100 * row['indent_exact']:.1f}%  "
                  f"fidelity {100 * row['fidelity']:.1f}%  {row['chars_per_s']:,.0f} chars/s")  # fmt: skip
    doc = {"corpus": str(CORPUS.name), "machine": f"{_cpu_name()}, {_cores()} cores", "rows": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
