"""How tall a line crop the recogniser should get: lines exact and seconds per page by crop.

rapidocr's recogniser scales every line crop to 48 px high, so the crop's height decides how
large the type is at the model's input. `RapidOCRBackend` cuts each line `crop_em` ems tall
around its centre, rounded out to whole pixels; on a page aged to Tiny (6.4 px type) 2.0 em
becomes 14 px (2.19 em) and 1.8 em becomes 12 px (1.88 em), while 8 px Latin lines are 16 px
either way. This reads the same pages under each `crop_em`, uncached, through the whole `cpu`
decoder with its reading aids (first reading, correction, re-reading), in one fresh warm
process per setting and repeat, the settings interleaved:

- pages aged to Tiny from LoCoMo conversations (`--chats`, the first `--pages` full pages of
  each, aged from Small), where rapidocr reads every line first;
- the embedded chat's Chinese pages, whose taller CJK lines rapidocr also reads first.

Prints lines exact (line checks that pass), fidelity and median seconds per page for each
setting and writes JSON.

    python benchmarks/crop_height.py --crops 1.5,1.8,2.0,2.2 --out benchmarks/results/crop_height.json
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCOMO = ROOT.parent / "shared" / "data" / "locomo"


def build(db: str, chats: list[str], pages: int, chinese: bool = True) -> None:
    """One session per chat with its first `pages` full pages aged to Tiny; with `chinese`,
    one of the embedded chat's Chinese turns."""
    from optimem import OpticalMemory
    from optimem.aging.policies import AgingPlan
    from optimem.bench.datasets import load, load_default
    from optimem.layout import is_cjk
    from optimem.modes import Mode

    mem = OpticalMemory(db, backend="cpu", decode="lazy", policy="none")
    for chat in chats:
        session = mem.session(f"tiny-{chat}")
        session.add_turns([(t.role, t.content) for t in load(str(LOCOMO / f"{chat}.json")).turns[:400]])
        session.compress(flush=True)
        ids = [p.id for p in session.pages()][:-1][:pages]  # full pages only
        with mem.store.transaction():
            mem.pager.age(f"tiny-{chat}", AgingPlan({i: Mode.TINY for i in ids}, 0))
    if chinese:
        cjk = mem.session("cjk")
        cjk.add_turns([(t.role, t.content) for t in load_default().turns if is_cjk(t.content)])
        cjk.compress(flush=True)
    mem.close()


def tiny_line_boxes(db: str, prefix: str = "tiny-"):
    """(grey page, line box, type size) of every line of every Tiny page of `build`'s memory,
    in the sessions whose names start with `prefix`: what a recogniser is asked to read."""
    from optimem import OpticalMemory
    from optimem.backends import _lines

    mem = OpticalMemory(db, backend="cpu", decode="lazy", policy="none")
    try:
        for sid in [s for s in mem.store.session_ids() if s.startswith(prefix)]:
            for page in [p for p in mem.session(sid).pages() if p.mode.value == "tiny"]:
                page_in = mem.decoder.page_input(mem.store.page(sid, page.id))
                gray = _lines.as_gray(page_in.image)
                for box in page_in.lines:
                    yield gray, box, page_in.font_px
    finally:
        mem.close()


def words_right(texts: list[str], truth: list[str]) -> int:
    """Lines whose words (as the line check compares them) are all right."""
    from optimem.aids.linecheck import line_words

    return sum(line_words(t) == line_words(w) for t, w in zip(texts, truth, strict=True))


def child(db: str, crop_em: float) -> dict:
    """Every page of the memory read uncached with `crop_em`, after one read to warm up."""
    from optimem.backends.cpu import CpuBackend
    from optimem.backends.rapidocr import RapidOCRBackend

    return read_pages(db, CpuBackend(cjk=RapidOCRBackend(crop_em=crop_em)))


def read_pages(db: str, backend, prefixes: tuple[str, ...] = ("tiny-", "cjk")) -> dict:
    """Every Tiny and Chinese page of `build`'s memory (of the sessions whose names start with one of
    `prefixes`) read uncached by `backend` (a `CpuBackend`), after one read to warm up: seconds,
    lines exact and fidelity of each page, and the heights of its rapidocr's crops."""
    from optimem import OpticalMemory
    from optimem.backends import _lines
    from optimem.reading.fidelity import fidelity

    rapid = backend.cjk
    mem = OpticalMemory(db, backend=backend, decode="lazy", policy="none")
    sessions = [s for s in mem.store.session_ids() if s.startswith(prefixes)]
    first = True
    out: dict[str, dict] = {}
    for sid in sessions:
        session = mem.session(sid)
        ids = [p.id for p in session.pages() if sid == "cjk" or p.mode.value == "tiny"]
        if first:  # engines, spelling index and onnxruntime's first run outside the timing
            session.recall_page(ids[0], refresh=True)
            first = False
        heights: collections.Counter[int] = collections.Counter()
        rows = []
        for pid in ids:
            page_in = mem.decoder.page_input(mem.store.page(sid, pid))
            gray = _lines.as_gray(page_in.image)
            heights.update(rapid.cut_line(gray, box, page_in.font_px).shape[0] for box in page_in.lines)
            t0 = time.perf_counter()
            recall = session.recall_page(pid, refresh=True)
            seconds = time.perf_counter() - t0
            source = session.page_source(pid) or ""
            rows.append({"page": pid, "seconds": seconds, "lines_exact": recall.lines_exact,
                         "lines_checked": recall.lines_checked, "fidelity": fidelity(recall.text, source)})  # fmt: skip
        kind = "cjk" if sid == "cjk" else "tiny"
        group = out.setdefault(kind, {"pages": [], "crop_px": collections.Counter()})
        group["pages"] += rows
        group["crop_px"].update(heights)
    mem.close()
    return {
        kind: {"pages": g["pages"], "crop_px": dict(sorted(g["crop_px"].items()))} for kind, g in out.items()
    }


def run_child(db: str, crop_em: float) -> dict:
    return child_json(__file__, ["--crop", repr(crop_em)], db, f"crop_em={crop_em}")


def child_json(script: str, args: list[str], db: str, setting: str) -> dict:
    """`script --child ARGS --db DB` run in a fresh process of this checkout; the JSON it
    prints last. A failing child stops the benchmark with its error and the setting it had."""
    cmd = [sys.executable, str(Path(script).resolve()), "--child", *args, "--db", db]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"child failed at {setting}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def add_page_options(ap: argparse.ArgumentParser) -> None:
    """The options that choose `build`'s pages."""
    ap.add_argument("--chats", default="42,43", help="LoCoMo conversations whose pages age to Tiny")
    ap.add_argument("--pages", type=int, default=8, help="full pages of each chat aged to Tiny")


def summarise(crop_em: float, runs: list[dict]) -> list[dict]:
    return [
        {
            "crop_em": crop_em,
            "pages": kind,
            "crop_px": runs[0][kind]["crop_px"],
            **pages_read([r[kind] for r in runs]),
        }
        for kind in runs[0]
    ]


def pages_read(runs: list[dict]) -> dict:
    """The same pages read in several runs (`read_pages`' groups), summed: lines exact and
    fidelity of the first run, median seconds of each page over the runs."""
    pages = runs[0]["pages"]
    per_page = [statistics.median(r["pages"][i]["seconds"] for r in runs) for i in range(len(pages))]
    return {
        "page_count": len(pages),
        "lines_exact": sum(p["lines_exact"] or 0 for p in pages),
        "lines_checked": sum(p["lines_checked"] or 0 for p in pages),
        "fidelity": round(statistics.fmean(p["fidelity"] for p in pages), 4),
        "seconds_per_page": round(statistics.median(per_page), 3),
        "seconds_all_pages": round(sum(per_page), 2),
        "same_lines_every_run": len({json.dumps([p["lines_exact"] for p in r["pages"]]) for r in runs}) == 1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--crop", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--crops", default="1.8,2.0", help="crop heights in ems, comma list")
    add_page_options(ap)
    ap.add_argument("--repeat", type=int, default=1, help="fresh processes per setting (medians)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.db, args.crop)))
        return
    from optimem.bench.machine import cores, cpu_name

    crops = [float(c) for c in args.crops.split(",")]
    runs: dict[float, list[dict]] = {c: [] for c in crops}
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "pages.db")
        build(db, args.chats.split(","), args.pages)
        for _ in range(args.repeat):
            for c in crops:  # interleaved: a slow minute of the machine falls on every setting
                runs[c].append(run_child(db, c))
    rows = [row for c in crops for row in summarise(c, runs[c])]
    print(
        f"{'crop em':>7} {'pages':6} {'crop px':18} {'lines exact':>12} {'fidelity':>8} {'s/page':>7} {'s all':>7}"
    )
    for r in rows:
        px = ",".join(f"{h}:{n}" for h, n in r["crop_px"].items())
        print(f"{r['crop_em']:7.2f} {r['pages']:6} {px[:18]:18} {r['lines_exact']:>5}/{r['lines_checked']:<6} "
              f"{100 * r['fidelity']:7.2f}% {r['seconds_per_page']:7.2f} {r['seconds_all_pages']:7.1f}")  # fmt: skip
    doc = {
        "machine": f"{cpu_name()}, {cores()} cores",
        "load_average_at_end": os.getloadavg()[0],
        "decoder": "cpu (tesseract + rapidocr) with reading aids; only rapidocr's crop_em varies",
        "inputs": f"distinct pages: LoCoMo {args.chats}, {args.pages} full pages each aged to Tiny; "
        f"the embedded chat's Chinese pages; {args.repeat} fresh process(es) per setting, interleaved",
        "rows": rows,
    }
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
