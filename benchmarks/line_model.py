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
import statistics
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def run(models: list[Path | None], chats: list[str], pages: int, repeat: int) -> dict:
    import crop_height

    from optimem.backends._recogniser import LineRecogniser
    from optimem.backends.line_model import LineModel, cut_line
    from optimem.backends.rapidocr import RapidOCRBackend
    from optimem.bench.machine import cores, cpu_name
    from optimem.reading.fidelity import fidelity

    rapid = RapidOCRBackend()
    raw, upscaled, truth = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "pages.db")
        crop_height.build(db, chats, pages, chinese=False)
        for gray, box, font_px in crop_height.tiny_line_boxes(db):
            raw.append(cut_line(gray, box, font_px))
            upscaled.append(rapid._crop(gray, box, font_px))
            truth.append(box.text)
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
    return {
        "machine": f"{cpu_name()}, {cores()} cores; onnxruntime, 2 threads, batches of 16 (model) and 8 (PP-OCRv6)",
        "inputs": f"{len(raw)} distinct held-out lines: LoCoMo {','.join(chats)}, the first {pages} full pages of "
        "each typeset at Small and aged to Tiny; each reader's raw output (no correction, no re-reading); "
        f"median of {repeat} interleaved timed passes",
        "lines": len(raw),
        "rows": rows,
    }


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
        print(f"{row['reader']:50} {row['ms_per_line']:6.1f} ms/line  words right {row['lines_words_right']}/"
              f"{doc['lines']}  exact {row['lines_exact_to_the_character']}  fidelity {100 * row['fidelity']:.2f}%")  # fmt: skip
    print(doc["machine"])
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
