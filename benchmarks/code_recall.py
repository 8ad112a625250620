"""How code and tool output come back: words, indentation, tabs and line breaks, identifiers.

Typesets the held-out corpus (benchmarks/data/code_corpus.json: Python, JavaScript, Rust,
SQL, Go, TypeScript, shell output, tab-separated tool output, a markdown table, a traceback;
written for this project) as one chat on Small pages, reads the pages back as made and aged
to Tiny with each CPU decoder, and scores each turn's recalled text against its source:

- word recall: whitespace-separated tokens of the turn found in its recalled text;
- code word recall (with indentation): the same, counting a source line's words only when
  its recalled line (the best match) has exactly its leading whitespace;
- indentation exact: source lines whose recalled line has their leading whitespace;
- tab lines exact: lines holding tabs whose recalled line has the same tab-separated shape;
- shape exact: turns whose sequence of tabs and line breaks comes back unchanged;
- brackets and operators: the characters of SYMBOLS in the source that an alignment of the
  recalled text to it keeps (per engine: which reads `[](){}<>=!&|` best);
- digit-first identifiers exact (443/tcp, 2024-05-01, v1.2.3: the side channel's kinds)
  found verbatim in the recalled text before any repair.

Decoders are named as `get_backend` names them; a `+raw` suffix (e.g. `rapidocr+raw`) reads
code rows without the code font's cells (`backends/_glyphs.py`), i.e. the engine alone with
only the whitespace put back, to compare engines on the glyphs themselves. `--checks` hands
each page its line checks, as a memory with reading aids does: the decoder gives the first
reading proofreading starts from (code rows are never corrected), and `cpu` reads the code
rows of sharp pages by their glyph cells alone where that passes their check.

`--baseline TREE` runs the same measurement, in the same invocation, under another checkout
of optimem (e.g. `git archive <commit> optimem | tar -x -C TREE`), where code is typeset at
the prose size and tool output flows as prose: the before/after table of the README.

    python benchmarks/code_recall.py --out benchmarks/results/code_recall.json --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein
from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

from optimem.aids import linecheck
from optimem.backends import get_backend
from optimem.backends.base import PageInput
from optimem.bench.machine import describe
from optimem.modes import Mode
from optimem.pages.typeset import RenderOptions, TurnText, paginate, resize_to
from optimem.pages.verbatim import extract
from optimem.reading.fidelity import fidelity

CORPUS = Path(__file__).parent / "data" / "code_corpus.json"
SYMBOLS = set("()[]{}<>=!&|+-*/%:;,.'\"$#@_\\`~^?")
_LABEL = re.compile(r"^[^:\n]{0,40}:[ \t]?")


def page_input(page, mode: Mode) -> PageInput:
    """The page as a decoder sees it at `mode`: resized as aging resizes it, boxes scaled."""
    factor = mode.canvas / page.options.canvas
    lines = tuple(line.scaled(factor) for line in page.lines)
    return PageInput(
        resize_to(page.image, mode.canvas), mode, lines, page.options.font_px * factor, page.has_cjk
    )


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _shape(line: str) -> str:
    return re.sub(r"[^\t]+", "x", line.strip(" "))


def score_turns(pairs: list[tuple[str, str]]) -> dict[str, float | int | None]:
    """Scores over (source turn, recalled turn) pairs; see the module docstring."""
    words = found = code_found = lines = indent_ok = tab_lines = tab_ok = shape_ok = 0
    ids = ids_ok = sym = sym_ok = 0
    for src, got in pairs:
        sym += sum(c in SYMBOLS for c in src)
        for tag, a0, a1, _, _ in Levenshtein.opcodes(src, got):
            if tag == "equal":
                sym_ok += sum(c in SYMBOLS for c in src[a0:a1])
        want = src.split()
        have: dict[str, int] = {}
        for w in got.split():
            have[w] = have.get(w, 0) + 1
        for w in want:
            words += 1
            if have.get(w, 0) > 0:
                have[w] -= 1
                found += 1
        shape_ok += re.sub(r"[^\t\n]", "", src) == re.sub(r"[^\t\n]", "", got)
        read = got.split("\n")
        at = 0  # recalled lines are matched in order: the best of the next few
        for line in src.split("\n"):
            if not line.strip():
                continue
            window = range(at, min(len(read), at + 4))
            j = max(window, key=lambda j: fuzz.ratio(read[j].strip(), line.strip()), default=None)
            best = ""
            if j is not None and fuzz.ratio(read[j].strip(), line.strip()) >= 50:
                best, at = read[j], j + 1
            lines += 1
            same = _indent(best) == _indent(line) and bool(best)
            indent_ok += same
            if same:
                bag = best.split()
                for w in line.split():
                    if w in bag:
                        bag.remove(w)
                        code_found += 1
            if "\t" in line.strip(" "):
                tab_lines += 1
                tab_ok += _shape(best) == _shape(line)
        for item in extract(src):
            if item.value[0].isdigit() and item.kind == "identifier":
                ids += 1
                ids_ok += item.value in got
    return {
        "word_recall": round(found / words, 4) if words else None,
        "code_word_recall": round(code_found / words, 4) if words else None,
        "symbol_recall": round(sym_ok / sym, 4) if sym else None,
        "indent_exact": round(indent_ok / lines, 4) if lines else None,
        "tab_lines_exact": round(tab_ok / tab_lines, 4) if tab_lines else None,
        "tab_lines": tab_lines,
        "shape_exact_turns": shape_ok,
        "turns": len(pairs),
        "digit_ids_exact": round(ids_ok / ids, 4) if ids else None,
        "digit_ids": ids,
        "lines": lines,
        "words": words,
    }


def recalled_turns(pages, reads, new_layout: bool) -> dict[int, str]:
    """Each turn's recalled text without its speaker label, as recall builds it."""
    rows, seen = [], set()
    for page, lines in zip(pages, reads, strict=True):
        for box, read in zip(page.lines, lines or ("",) * len(page.lines), strict=True):
            if new_layout and box.start == box.end == 0 and box.kind == "text":
                continue  # the label's own row holds no character of the turn
            if box.turn_id not in seen and box.start == 0 and (box.kind == "text" or not new_layout):
                read = _LABEL.sub("", read, count=1)
            seen.add(box.turn_id)
            rows.append((box, read))
    if new_layout:
        from optimem.layout import turn_texts

        return turn_texts(rows)
    out: dict[int, str] = {}
    for box, read in rows:
        out[box.turn_id] = (out.get(box.turn_id, "") + "\n" + read).lstrip("\n")
    return out


try:
    from optimem.backends._lines import code_as_typed as _CODE_AS_TYPED
except ImportError:  # a checkout from before code rows were read as typed
    _CODE_AS_TYPED = None


def measure(
    backends: list[str], variant: str, code_px: int | None = None, checks: bool = False
) -> list[dict]:
    snippets = json.loads(CORPUS.read_text())["snippets"]
    turns = [TurnText(i, s.get("role", "assistant"), s["text"]) for i, s in enumerate(snippets)]
    new_layout = hasattr(RenderOptions, "code_px")
    if new_layout:
        from optimem.pages.calibration import render_options

        options = render_options("cpu", Mode.SMALL)
        if code_px:
            options = RenderOptions(canvas=options.canvas, font_px=options.font_px, code_font_px=code_px)
    else:
        options = RenderOptions(canvas=Mode.SMALL.canvas, font_px=8)
    pages = paginate(turns, options)
    rows = []
    for name in backends:
        backend = get_backend(name.removesuffix("+raw"))
        if name.endswith("+raw"):
            import functools

            from optimem.backends import _lines

            _lines.code_as_typed = functools.partial(_CODE_AS_TYPED, cells=False)
        elif _CODE_AS_TYPED is not None:
            from optimem.backends import _lines

            _lines.code_as_typed = _CODE_AS_TYPED
        for mode in (Mode.SMALL, Mode.TINY):
            reads, fids, chars, secs = [], [], 0, 0.0
            for page in pages:
                t0 = time.perf_counter()
                pin = page_input(page, mode)
                if checks:  # as a memory with reading aids hands pages over: first reading only
                    pin = dataclasses.replace(pin, checks=tuple(linecheck.digest(b.text) for b in page.lines))
                decoded = backend.decode(pin)
                secs += time.perf_counter() - t0
                reads.append(decoded.lines)
                fids.append(fidelity(decoded.text, page.text))
                chars += len(page.text)
            got = recalled_turns(pages, reads, new_layout)
            pairs = [(t.content, got.get(t.turn_id, "")) for t in turns]
            row = {
                "variant": variant,
                "backend": name,
                "mode": mode.value,
                "font_px": options.font_px,
                "code_font_px": getattr(options, "code_px", options.font_px),
                "pages": len(pages),
                "line_checks": checks,
                **score_turns(pairs),
                "fidelity": round(sum(fids) / len(fids), 4),
                "chars_per_s": round(chars / secs, 1),
            }
            rows.append(row)
            print(
                f"{variant:6} {name:9} {mode.value:5} code {row['code_font_px']:2d}px  words "
                f"{100 * row['word_recall']:.1f}%  code words {100 * row['code_word_recall']:.1f}%  "
                f"symbols {100 * row['symbol_recall']:.1f}%  "
                f"indent {100 * row['indent_exact']:.1f}%  tab lines {100 * row['tab_lines_exact']:.1f}%  "
                f"shape {row['shape_exact_turns']}/{row['turns']}  digit ids "
                f"{100 * row['digit_ids_exact']:.1f}%  {row['chars_per_s']:,.0f} chars/s",
                flush=True,
            )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="tesseract,rapidocr,cpu")
    ap.add_argument("--baseline", type=Path, help="another optimem checkout to measure as 'before'")
    ap.add_argument("--baseline-backends", default="cpu")
    ap.add_argument("--variant", default="after")
    ap.add_argument("--code-px", type=int, help="code size instead of the calibrated one")
    ap.add_argument(
        "--checks",
        action="store_true",
        help="give pages their line checks, as a memory with reading aids does (the first reading "
        "proofreading starts from; `cpu` then reads sharp code rows by their glyph cells first)",
    )
    ap.add_argument("--rows-out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rows: list[dict] = []
    if args.baseline:
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / "optimem-code-recall-before.json"
        env = dict(os.environ, PYTHONPATH=str(args.baseline.resolve()))
        cmd = [sys.executable, __file__, "--variant", "before", "--backends", args.baseline_backends]
        cmd += ["--checks"] if args.checks else []
        subprocess.run([*cmd, "--rows-out", str(tmp)], env=env, check=True)
        rows += json.loads(tmp.read_text())
    rows += measure(args.backends.split(","), args.variant, args.code_px, args.checks)
    if args.rows_out:
        args.rows_out.write_text(json.dumps(rows))
        return
    doc = {
        "corpus": CORPUS.name,
        "machine": describe(),
        "load_average_at_end": os.getloadavg()[0],
        "rows": rows,
    }
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
