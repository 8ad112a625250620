"""What reading a page aged to Tiny costs at least on this machine, and what was tried against it.

A page aged to Tiny (6.4 px type) is read line by line by rapidocr's PP-OCRv6 recogniser
(`optimem.backends._recogniser`), and that reading is most of the page's time. Each part
below measures one way that time could fall, on the same distinct pages (LoCoMo
conversations' first full pages typeset at Small and aged to Tiny, `crop_height.build`):

- `recogniser`: onnxruntime's own profile of the recogniser on every Tiny line crop, by
  operator (what a cheaper model would have to cut), and milliseconds per line with one and
  two intra-op threads, interleaved, the text compared;
- `first-reader`: the whole `cpu` decoder with its reading aids, rapidocr reading first
  (the default) against tesseract reading first (`blur_px` below Tiny's type, so Tiny pages
  take the sharp path: tesseract, correction, rapidocr for the lines still wrong); fresh
  processes, interleaved; lines exact, fidelity, seconds per page;
- `int8`: the recogniser's convolutions quantised to 8 bits (onnxruntime's static QDQ
  quantisation, per channel, calibrated on the first chat's crops) against the float model
  on the other chats' crops: lines with every word right as the recogniser reads them, and
  seconds; needs `pip install onnx` (not one of optimem's dependencies);
- `demo`: `optimem demo` in a child process: wall time, CPU seconds (user + system) and how
  many cores it kept busy; CPU seconds ÷ cores is the least wall time any schedule of the same
  work could take.

    python benchmarks/tiny_floor.py --out benchmarks/results/tiny_floor.json
    python benchmarks/tiny_floor.py --parts demo --out benchmarks/results/tiny_floor.json  # one part again
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import crop_height  # noqa: E402
from results_file import write_json  # noqa: E402  (the Tiny pages and their reading, shared with this benchmark)

PARTS = ("recogniser", "first-reader", "int8", "demo")
FIRST_READERS = {"rapidocr": 7.5, "tesseract": 6.0}  # CpuBackend's blur_px: Tiny type is 6.4 px


def tiny_crops(db: str, prefix: str) -> tuple[list, list[str]]:
    """The recogniser's input crops of every Tiny page of the sessions starting with `prefix`,
    and the text each line was typeset with."""
    from optimem.backends.rapidocr import RapidOCRBackend

    rapid = RapidOCRBackend()
    lines = [(rapid._crop(g, box, px), box.text) for g, box, px in crop_height.tiny_line_boxes(db, prefix)]
    return [c for c, _ in lines], [t for _, t in lines]


def part_recogniser(db: str, repeat: int) -> dict:
    import onnxruntime as ort

    from optimem.backends._recogniser import LineRecogniser, model_path

    crops, truth = tiny_crops(db, "tiny-")
    one, two = LineRecogniser(threads=1), LineRecogniser(threads=2)
    one.read(crops[:8]), two.read(crops[:8])  # onnxruntime's first run outside the timing
    seconds: dict[int, list[float]] = {1: [], 2: []}
    texts: dict[int, list[str]] = {}
    for _ in range(repeat):
        for threads, rec in ((1, one), (2, two)):  # interleaved
            t0 = time.perf_counter()
            texts[threads] = rec.read(crops)[0]
            seconds[threads].append(time.perf_counter() - t0)

    profiled = LineRecogniser(threads=2)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.intra_op_num_threads = 2
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    options.profile_file_prefix = str(Path(tempfile.gettempdir()) / "optimem-recogniser")
    profiled._session = ort.InferenceSession(
        str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    profiled.read(crops)
    trace = Path(profiled._session.end_profiling())
    by_op: collections.Counter[str] = collections.Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    trace.unlink()
    total = sum(by_op.values())
    return {
        "lines": len(crops),
        "input_px_median": [48, int(statistics.median(c.shape[1] * 48 / c.shape[0] for c in crops))],
        "ms_per_line": {
            f"{k} thread{'s' if k > 1 else ''}": round(1000 * statistics.median(v) / len(crops), 1)
            for k, v in seconds.items()
        },
        "seconds_each_run": {str(k): [round(s, 2) for s in v] for k, v in seconds.items()},
        "same_text_1_and_2_threads": texts[1] == texts[2],
        "raw_lines_words_right": crop_height.words_right(texts[2], truth),
        "operator_share": {op: round(us / total, 3) for op, us in by_op.most_common(8)},
    }


def first_reader_child(db: str, reader: str) -> dict:
    from optimem.backends.cpu import CpuBackend

    return crop_height.read_pages(db, CpuBackend(blur_px=FIRST_READERS[reader]), ("tiny-",))["tiny"]


def part_first_reader(db: str, repeat: int) -> list[dict]:
    runs: dict[str, list[dict]] = {r: [] for r in FIRST_READERS}
    for _ in range(repeat):
        for reader in FIRST_READERS:  # interleaved, a fresh process each
            runs[reader].append(crop_height.child_json(__file__, [reader], db, f"first reader {reader}"))
    return [{"first_reader": reader, **crop_height.pages_read(got)} for reader, got in runs.items()]


def part_int8(db: str, chats: list[str], repeat: int) -> dict:
    try:
        import onnx
        from onnx import version_converter
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError as exc:
        raise SystemExit(f"the int8 part needs the onnx package (pip install onnx): {exc}") from None
    import numpy as np

    from optimem.backends._recogniser import HEIGHT, MIN_RATIO, LineRecogniser, model_path

    float_rec = LineRecogniser(threads=2)
    calibration, _ = tiny_crops(db, f"tiny-{chats[0]}")
    held_out: list = []
    truth: list[str] = []
    for chat in chats[1:]:
        c, t = tiny_crops(db, f"tiny-{chat}")
        held_out += c
        truth += t

    def tensors():
        for crop in calibration[::3]:
            out = np.zeros(
                (1, 3, HEIGHT, int(HEIGHT * max(MIN_RATIO, crop.shape[1] / crop.shape[0]))), "float32"
            )
            float_rec._normalise_into(out[0], crop)
            yield {"x": out}

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = tensors()

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        opset17, quantised = Path(tmp) / "opset17.onnx", Path(tmp) / "int8.onnx"
        # per-channel scales need opset 13 or later; the wheel's model is opset 11
        onnx.save(version_converter.convert_version(onnx.load(str(model_path())), 17), str(opset17))
        quantize_static(
            str(opset17), str(quantised), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
            op_types_to_quantize=["Conv"], activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )  # fmt: skip
        int8_rec = LineRecogniser(threads=2, path=quantised)
        seconds: dict[str, list[float]] = {"float": [], "int8": []}
        texts: dict[str, list[str]] = {}
        for rec in (float_rec, int8_rec):
            rec.read(held_out[:8])
        for _ in range(repeat):
            for name, rec in (("float", float_rec), ("int8", int8_rec)):
                t0 = time.perf_counter()
                texts[name] = rec.read(held_out)[0]
                seconds[name].append(time.perf_counter() - t0)
    return {
        "calibrated_on": f"{len(calibration[::3])} crops of conversation {chats[0]}",
        "lines": len(held_out),
        "seconds_median": {k: round(statistics.median(v), 2) for k, v in seconds.items()},
        "raw_lines_words_right": {k: crop_height.words_right(v, truth) for k, v in texts.items()},
        "int8_lines_same_text_as_float": sum(
            a == b for a, b in zip(texts["float"], texts["int8"], strict=True)
        ),
    }


def part_demo() -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "optimem.cli", "demo", "--out", tmp, "--no-plots"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
        wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"optimem demo failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    from optimem.bench.machine import cores

    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "cores_busy": round(cpu / wall, 2),
        "least_wall_s_on_these_cores": round(cpu / cores(), 1),
        "budget_row": next((ln.strip() for ln in done.stdout.splitlines() if "optimem budget" in ln), ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", choices=tuple(FIRST_READERS), help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    crop_height.add_page_options(ap)
    ap.add_argument("--repeat", type=int, default=2, help="interleaved runs per setting (medians)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(first_reader_child(args.db, args.child)))
        return
    parts = args.parts.split(",")
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}: choose from {', '.join(PARTS)}")
    from optimem.bench.machine import cores, cpu_name

    chats = args.chats.split(",")
    doc: dict = {
        "machine": f"{cpu_name()}, {cores()} cores",
        "decoder": "cpu (tesseract + rapidocr's PP-OCRv6 recogniser) with reading aids",
        "inputs": f"distinct pages: LoCoMo {args.chats}, the first {args.pages} full pages of each typeset at "
        f"Small and aged to Tiny; {args.repeat} interleaved run(s) per setting",
    }
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "pages.db")
        if set(parts) - {"demo"}:
            crop_height.build(db, chats, args.pages, chinese=False)
        if "recogniser" in parts:
            doc["recogniser"] = r = part_recogniser(db, args.repeat)
            print(f"recogniser: {r['lines']} Tiny lines, input {r['input_px_median'][1]} px wide (median); "
                  f"ms/line {r['ms_per_line']}; same text with 1 and 2 threads: {r['same_text_1_and_2_threads']}")  # fmt: skip
            print(
                "  time by operator: "
                + ", ".join(f"{k} {100 * v:.1f}%" for k, v in r["operator_share"].items())
            )
        if "first-reader" in parts:
            doc["first_reader"] = rows = part_first_reader(db, args.repeat)
            for row in rows:
                print(f"first reader {row['first_reader']:9}: {row['lines_exact']}/{row['lines_checked']} lines "
                      f"exact, fidelity {100 * row['fidelity']:.2f}%, {row['seconds_per_page']:.2f} s/page (median)")  # fmt: skip
        if "int8" in parts:
            doc["int8"] = q = part_int8(db, chats, args.repeat)
            print(f"int8 convolutions: {q['lines']} held-out lines; seconds {q['seconds_median']}; words right "
                  f"{q['raw_lines_words_right']}; same text as float: {q['int8_lines_same_text_as_float']}")  # fmt: skip
    if "demo" in parts:
        doc["demo"] = d = part_demo()
        print(f"optimem demo: {d['wall_s']} s wall, {d['cpu_s']} CPU s, {d['cores_busy']} cores busy; "
              f"no schedule of the same work beats {d['least_wall_s_on_these_cores']} s on {cores()} cores")  # fmt: skip
    doc["load_average_at_end"] = os.getloadavg()[0]
    write_json(args.out, doc, keep_earlier=True)  # parts not run this time keep what was there


if __name__ == "__main__":
    main()
