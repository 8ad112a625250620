"""The line model against PP-OCRv6 on held-out LoCoMo lines aged to Tiny, in one run.

optimem reads the Latin lines of aged pages with its own line model
(`optimem.backends.line_model`, trained on synthetic text by scripts/train_line_model.py)
where it read them with rapidocr's PP-OCRv6 recogniser. This reads every line of the first
`--pages` full pages of LoCoMo conversations (never used in training) typeset at Small and
aged to Tiny with each reader, interleaved, after one untimed pass, and counts each reader's
raw output (no correction, no re-reading) against the typeset text:

    python benchmarks/line_model.py --out benchmarks/results/line_model.json
    python benchmarks/line_model.py --model .spike/run/line_model.onnx   # another build beside it
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))


def run(models: list[Path | None], chats: list[str], pages: int, repeat: int) -> dict:
    import crop_height

    from optimem.backends.line_model import cut_line
    from optimem.backends.rapidocr import RapidOCRBackend
    from optimem.bench.machine import cores, cpu_name

    rapid = RapidOCRBackend()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "pages.db")
        crop_height.build(db, chats, pages, chinese=False)
        on_grid = list(crop_height.tiny_line_boxes(db))
    off_grid = list(moved_down(chats, len(on_grid)))
    sets = {}
    for label, boxes in (("on the grid", on_grid), ("moved down 1-4 Small px", off_grid)):
        sets[label] = (
            [cut_line(gray, box, font_px) for gray, box, font_px in boxes],
            [rapid._crop(gray, box, font_px) for gray, box, font_px in boxes],
            [box.text for _, box, _ in boxes],
        )
    rows = []
    for label, (raw, upscaled, truth) in sets.items():
        rows += [dict(row, lines=label) for row in _read_all(models, raw, upscaled, truth, repeat)]
    return {
        "machine": f"{cpu_name()}, {cores()} cores; onnxruntime, 2 threads, batches of 16 (model) and 8 (PP-OCRv6)",
        "inputs": f"distinct held-out lines of LoCoMo {','.join(chats)} typeset at Small and aged to Tiny: "
        f"'on the grid', the first {pages} full pages of each as a memory makes them ({len(on_grid)} lines); "
        f"'moved down', the same chats' first {len(off_grid)} lines with each page moved down 1-4 Small pixels "
        "before aging, as the lines below a taller (Chinese, emoji) line sit; each reader's raw output (no "
        f"correction, no re-reading); median of {repeat} interleaved timed passes",
        "lines": {label: len(truth) for label, (_, _, truth) in sets.items()},
        "rows": rows,
    }


def moved_down(chats: list[str], lines: int):
    """(grey page, box, type size) of the first `lines` prose lines of `chats`, each page moved
    down 1-4 Small pixels before aging (scripts/train_line_model.py's `tiny_boxes`)."""
    import crop_height

    from optimem.bench.datasets import load
    from optimem.pages.typeset import TurnText

    sys.path.insert(0, str(ROOT / "scripts"))
    from train_line_model import tiny_boxes

    turns = [
        TurnText(i, t.role, t.content, None)
        for chat in chats
        for i, t in enumerate(load(str(crop_height.LOCOMO / f"{chat}.json")).turns[:400])
    ]
    return itertools.islice(tiny_boxes(turns, shifts=4, seed=42, moved=1.0), lines)


def _read_all(models: list[Path | None], raw, upscaled, truth, repeat: int) -> list[dict]:
    """Each model and PP-OCRv6 over one set of lines, interleaved, after one untimed pass."""
    import crop_height

    from optimem.backends._recogniser import LineRecogniser
    from optimem.backends.line_model import LineModel
    from optimem.reading.fidelity import fidelity

    readers = {}
    for path in models:
        model = LineModel(threads=2, path=path)
        name = f"line model {model.digest} ({path or 'shipped'})"
        readers[name] = (lambda m=model: m.read(raw)[0], model.trained)
    pp = LineRecogniser(threads=2)
    readers["PP-OCRv6 (rapidocr's recogniser)"] = (lambda: pp.read(upscaled)[0], {})
    for read, _ in readers.values():
        read()  # first runs outside the timing
    seconds: dict[str, list[float]] = {k: [] for k in readers}
    texts: dict[str, list[str]] = {}
    for _ in range(repeat):
        for name, (read, _) in readers.items():  # interleaved
            t0 = time.perf_counter()
            texts[name] = [t.strip() for t in read()]
            seconds[name].append(time.perf_counter() - t0)
    rows = []
    for name, got in texts.items():
        rows.append({
            "reader": name,
            "trained": readers[name][1],
            "ms_per_line": round(1000 * statistics.median(seconds[name]) / len(raw), 1),
            "lines_words_right": crop_height.words_right(got, truth),
            "lines_exact_to_the_character": sum(t == w.strip() for t, w in zip(got, truth, strict=True)),
            "fidelity": round(statistics.fmean(fidelity(t, w) for t, w in zip(got, truth, strict=True)), 4),
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", type=Path, action="append", help="an ONNX line model (default: the shipped one)"
    )
    ap.add_argument("--chats", default="42,43")
    ap.add_argument("--pages", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    doc = run(args.model or [None], args.chats.split(","), args.pages, args.repeat)
    for row in doc["rows"]:
        print(f"{row['lines']:24} {row['reader']:50} {row['ms_per_line']:6.1f} ms/line  words right "
              f"{row['lines_words_right']}/{doc['lines'][row['lines']]}  exact {row['lines_exact_to_the_character']}"
              f"  fidelity {100 * row['fidelity']:.2f}%")  # fmt: skip
    print(doc["machine"])
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
