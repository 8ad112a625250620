"""CPU OCR throughput and fidelity, side by side, on the same rendered pages.

For each backend and configuration (layout lines vs full-page detection, upscale on/off,
1 or 2 workers): characters/s, fidelity and s/page, median over ≥3 full pages, on 1024 and
512 canvases (Latin 8 and 10 px, CJK 12 px). Then the forgetting curve: pages rendered at
Large, resized down the ladder and read with their layout scaled.

    python benchmarks/ocr_throughput.py --out out/ocr_throughput.json
    python benchmarks/ocr_throughput.py --backend tesseract --pages 3 --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from calibrate import calibration_turns, full_pages

from optimem.backends import backend_class
from optimem.backends.base import PageInput
from optimem.bench.machine import cores, cpu_name
from optimem.modes import LADDER, Mode
from optimem.pages.typeset import RenderOptions, resize_to
from optimem.reading.fidelity import fidelity

NO_UPSCALE = ((0.0, 1),)
CONFIGS = {
    "tesseract": {
        "lines w2": {"workers": 2},
        "lines w1": {"workers": 1},
        "lines w2 no-upscale": {"workers": 2, "latin_upscale": NO_UPSCALE},
        "page w1 (psm6)": {"workers": 1, "use_layout": False},
    },
    "rapidocr": {
        "lines 1x2thr crop2.0": {"workers": 1, "threads": 2},
        "lines 2x1thr crop2.0": {"workers": 2, "threads": 1},
        "lines 1x2thr crop1.4": {"workers": 1, "threads": 2, "crop_em": 1.4},
        "page 2thr": {"workers": 1, "threads": 2, "use_layout": False},
    },
}
SETS = [  # (script, canvas, px)
    ("latin", 1024, 10),
    ("latin", 1024, 8),
    ("latin", 512, 8),
    ("cjk", 1024, 12),
]


def run_config(backend, pages, px):
    fids, secs, cpu, chars = [], [], [], []
    for page in pages:
        t0, c0 = time.perf_counter(), time.process_time()
        d = backend.decode(PageInput(page.image, Mode.BASE, page.lines, float(px), page.has_cjk))
        secs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        fids.append(fidelity(d.text, page.text))
        chars.append(len(page.text))
    return {
        "pages": len(pages),
        "chars_per_page": round(statistics.median(chars)),
        "fidelity": round(statistics.median(fids), 4),
        "s_per_page": round(statistics.median(secs), 2),
        "cpu_s_per_page": round(statistics.median(cpu), 2),
        "chars_per_s": round(statistics.median(c / s for c, s in zip(chars, secs, strict=True))),
    }


def forgetting_curve(backend, turns, px: int, n_pages: int) -> dict:
    """Render at Large, resize to each lower canvas, read with the layout scaled."""
    pages = full_pages(turns, RenderOptions(canvas=Mode.LARGE.canvas, font_px=px, cjk_font_px=px), n_pages)
    out = {}
    for mode in LADDER[1:]:
        f = mode.canvas / Mode.LARGE.canvas
        fids = []
        for page in pages:
            image = resize_to(page.image, mode.canvas)
            lines = tuple(line.scaled(f) for line in page.lines)
            d = backend.decode(PageInput(image, mode, lines, px * f, page.has_cjk))
            fids.append(fidelity(d.text, page.text))
        out[mode.value] = {
            "font_px_effective": round(px * f, 2),
            "fidelity": round(statistics.median(fids), 4),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", nargs="+", default=list(CONFIGS))
    parser.add_argument("--pages", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="first config of each backend only")
    parser.add_argument("--out", type=Path, default=Path("out/ocr_throughput.json"))
    args = parser.parse_args(argv)
    texts = calibration_turns()
    result = {
        "machine": f"{cpu_name()} ({cores()} cores)",
        "load_avg_at_start": os.getloadavg(),
        "pages_per_cell": args.pages,
        "rows": [],
        "forgetting": {},
    }
    print(
        f"{'backend':10} {'config':24} {'set':16} {'chars':>6} {'fid':>7} {'s/page':>7} {'cpu s':>6} {'chars/s':>8}"
    )
    for name in args.backend:
        configs = CONFIGS[name]
        if args.quick:
            configs = dict(list(configs.items())[:1])
        for label, opts in configs.items():
            backend = backend_class(name)(**opts)
            for script, canvas, px in SETS:
                pages = full_pages(
                    texts[script], RenderOptions(canvas=canvas, font_px=px, cjk_font_px=px), args.pages
                )
                row = {
                    "backend": name,
                    "config": label,
                    "fingerprint": backend.fingerprint(),
                    "script": script,
                    "canvas": canvas,
                    "font_px": px,
                }
                row.update(run_config(backend, pages, px))
                result["rows"].append(row)
                print(
                    f"{name:10} {label:24} {script}/{canvas}/{px}px".ljust(54)
                    + f"{row['chars_per_page']:>6} {row['fidelity']:>7.4f} {row['s_per_page']:>7.2f}"
                    f" {row['cpu_s_per_page']:>6.2f} {row['chars_per_s']:>8}",
                    flush=True,
                )
            if label == next(iter(configs)):
                curve = forgetting_curve(backend, texts["latin"], 12, min(args.pages, 2))
                result["forgetting"][name] = {"render": "large, latin 12 px", "config": label, "modes": curve}
                print(
                    f"{name} forgetting curve (Large 12 px, resized): "
                    + ", ".join(
                        f"{m} {v['font_px_effective']}px {v['fidelity']:.3f}" for m, v in curve.items()
                    ),
                    flush=True,
                )
            backend.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"→ {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
