"""Find, per backend, mode and script, the densest font a CPU OCR still reads at ≥97%.

Renders FULL pages of the embedded default chat (English turns; Chinese paragraphs) at a
candidate font size, decodes them with the layout known, and walks the size down while the
pages still read back at the target (with a margin) and up while they do not. Writes
optimem/data/calibration.json (schema: optimem/pages/calibration.py). Gundam has Large's 1280
canvas, so it reuses Large's pages with Gundam's positions.

The "code" script is monospace text kept as typed (scripts/data/code_calibration.json:
code in eight languages, shell output with aligned columns and tabs, tables; written for
this project), scored by word recall with indentation (`metrics.code_word_recall`) against
--code-target, since one wrong character loses a whole token of code.

    python scripts/calibrate.py                       # both backends, every mode
    python scripts/calibrate.py --backend tesseract --modes tiny small
    python scripts/calibrate.py --backend cpu --scripts code --merge
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from optimem.backends import get_backend
from optimem.backends.base import PageInput
from optimem.layout import is_cjk
from optimem.modes import Mode
from optimem.pages.typeset import RenderedPage, RenderOptions, TurnText, paginate
from optimem.reading.fidelity import code_word_recall, fidelity
from optimem.tokens import count_tokens

ROOT = Path(__file__).resolve().parents[1]
CHAT = ROOT / "optimem" / "data" / "default_chat.json"
OUT = ROOT / "optimem" / "data" / "calibration.json"
CODE = ROOT / "scripts" / "data" / "code_calibration.json"
MODES = (Mode.LARGE, Mode.BASE, Mode.SMALL, Mode.TINY)
# Where the search starts (DESIGN §5 and docs/cpu-backends.md): the expected answer.
START = {
    ("tesseract", "latin"): 8,
    ("tesseract", "cjk"): 14,
    ("rapidocr", "latin"): 8,
    ("rapidocr", "cjk"): 10,
}
CODE_START = 14  # benchmarks/code_recall.py: 8–12 px code reads 75–90% of its words
MIN_PX, MAX_PX = 5, 24


def calibration_turns(path: Path = CHAT) -> dict[str, list[TurnText]]:
    """English turns, and every paragraph holding Chinese as its own turn."""
    data = json.loads(path.read_text(encoding="utf-8"))
    turns = [t for s in data["sessions"] for t in s["turns"]]
    latin = [TurnText(i, t["role"], t["content"]) for i, t in enumerate(turns) if not is_cjk(t["content"])]
    paragraphs = [p for t in turns for p in t["content"].split("\n") if is_cjk(p)]
    roles = ("user", "assistant")
    cjk = [TurnText(i, roles[i % 2], p) for i, p in enumerate(paragraphs)]
    return {"latin": latin, "cjk": cjk, "code": code_turns()}


def code_turns(path: Path = CODE) -> list[TurnText]:
    """The code calibration corpus, one turn per snippet (tool output as tool turns)."""
    snippets = json.loads(path.read_text(encoding="utf-8"))["snippets"]
    return [TurnText(i, s.get("role", "assistant"), s["text"]) for i, s in enumerate(snippets)]


def code_pairs(page: RenderedPage, lines, turns: list[TurnText]) -> list[tuple[str, str]]:
    """(source line, reading) of each monospace row: the turn's own characters, tabs and all."""
    content = {t.turn_id: t.content for t in turns}
    return [
        (content[box.turn_id][box.start : box.end], read)
        for box, read in zip(page.lines, lines or ("",) * len(page.lines), strict=True)
        if box.kind == "code"
    ]


def full_pages(turns: list[TurnText], options: RenderOptions, n: int) -> list[RenderedPage]:
    """`n` full pages (the last, partial page never counts), cycling the text if short."""
    pool = full_pages_turns(turns, options, n)
    return paginate(pool, options)[:n]


def full_pages_turns(turns: list[TurnText], options: RenderOptions, n: int) -> list[TurnText]:
    """The turns `full_pages` typesets: `turns`, cycled until they fill more than `n` pages."""
    pool = list(turns)
    while True:
        pages = paginate(pool, options)
        if len(pages) > n:
            return pool
        # Cycle from a different starting turn so repeated pages are not identical.
        shift = len(pool) // 3 + 1
        extra = turns[shift % len(turns) :] + turns[: shift % len(turns)]
        pool += [TurnText(len(pool) + i, t.role, t.content) for i, t in enumerate(extra)]


def evaluate(
    backend, mode: Mode, turns, px: int, n_pages: int, target: float, margin: float, script: str = "latin"
):
    """Fidelity (code: word recall with indentation) of up to `n_pages` pages at `px`; stops
    after the first page that fails. Code is set at `px` beside prose at the start size."""
    if script == "code":
        latin = START.get((getattr(backend, "name", ""), "latin"), 8)
        options = RenderOptions(canvas=mode.canvas, font_px=latin, code_font_px=px)
    else:
        options = RenderOptions(canvas=mode.canvas, font_px=px, cjk_font_px=px)
    pool = full_pages_turns(turns, options, n_pages)
    pages = paginate(pool, options)[:n_pages]
    fids, secs, chars, tokens = [], [], [], []
    for page in pages:
        inp = PageInput(page.image, mode, page.lines, float(options.font_px), page.has_cjk)
        decoded = backend.decode(inp)
        if script == "code":
            fids.append(code_word_recall(code_pairs(page, decoded.lines, pool)))
        else:
            fids.append(fidelity(decoded.text, page.text))
        secs.append(decoded.seconds)
        chars.append(len(page.text))
        tokens.append(count_tokens(page.text))
        if fids[-1] < target:
            break
    ok = len(fids) == n_pages and min(fids) >= target and statistics.mean(fids) >= margin
    return ok, {
        "font_px": px,
        "fidelity": round(statistics.mean(fids), 4),
        "min_fidelity": round(min(fids), 4),
        "pages": len(fids),
        "chars_per_page": round(statistics.mean(chars)),
        "text_tokens_per_page": round(statistics.mean(tokens)),
        "ratio": round(statistics.mean(tokens) / mode.positions, 2),
        "seconds_per_page": round(statistics.mean(secs), 2),
    }


def search(backend, name, mode, script, turns, args, log) -> dict:
    """Smallest px that passes: step down from a passing start, up from a failing one."""
    tried: dict[int, dict] = {}

    def run(px: int) -> bool:
        t0 = time.perf_counter()
        margin = {"cjk": args.cjk_margin, "code": args.code_target}.get(script, args.margin)
        target = args.code_target if script == "code" else args.target
        ok, rec = evaluate(backend, mode, turns, px, args.pages, target, margin, script)
        tried[px] = rec
        log(
            f"{name:9} {mode.value:5} {script:5} {px:2d}px  fid {rec['fidelity']:.4f} "
            f"(min {rec['min_fidelity']:.4f}, {rec['pages']}p)  {'pass' if ok else 'fail'}  "
            f"{time.perf_counter() - t0:.0f}s"
        )
        rec["pass"] = ok
        return ok

    px = args.start.get((name, script), CODE_START if script == "code" else START.get((name, script), 10))
    floor = args.code_min_px if script == "code" else MIN_PX
    if run(px):
        while px > floor and run(px - 1):
            px -= 1
    else:
        while px < MAX_PX and not run(px + 1):
            px += 1
        px += 1
    best = dict(tried.get(px) or tried[max(tried)])
    best["passed"] = bool(best.pop("pass", False))  # False: no size reached the target
    best["tried"] = {str(k): v["fidelity"] for k, v in sorted(tried.items())}
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", nargs="+", default=["tesseract", "rapidocr"])
    parser.add_argument("--modes", nargs="+", default=[m.value for m in MODES])
    parser.add_argument("--scripts", nargs="+", default=["latin", "cjk"])
    parser.add_argument("--target", type=float, default=0.97)
    parser.add_argument("--margin", type=float, default=0.975, help="mean fidelity required")
    parser.add_argument(
        "--cjk-margin",
        type=float,
        default=0.97,
        help="mean fidelity required of CJK pages (tesseract's Chinese model tops out near 97%%)",
    )
    parser.add_argument(
        "--code-target",
        type=float,
        default=0.95,
        help="word recall with indentation that code pages must reach (each page and mean)",
    )
    parser.add_argument(
        "--code-min-px",
        type=int,
        default=8,
        help="smallest code size tried: code is never set denser than the prose beside it (8 px)",
    )
    parser.add_argument("--pages", type=int, default=2, help="full pages per font size")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--chat", type=Path, default=CHAT)
    parser.add_argument("--merge", action="store_true", help="keep other backends in --out")
    args = parser.parse_args(argv)
    args.start = {}
    modes = [Mode.parse(m) for m in args.modes]
    texts = calibration_turns(args.chat)

    def log(msg: str) -> None:
        print(msg, flush=True)

    result: dict = {
        "version": 1,
        "generated_by": "scripts/calibrate.py",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''} "
        f"{_cpu_name()} ({_cores()} cores), {platform.system()} Python {platform.python_version()}",
        "target_fidelity": args.target,
        "margin": args.margin,
        "pages_per_size": args.pages,
        "backends": {},
    }
    if args.merge and args.out.exists():
        # keep what was measured before (its header too); add or replace only what runs now
        old = json.loads(args.out.read_text())
        tag = "+".join(args.scripts)
        result = old | {f"{tag}_generated_at": result["generated_at"], f"{tag}_machine": result["machine"]}
    if "code" in args.scripts:
        result["code_target"] = args.code_target
    for name in args.backend:
        backend = get_backend(name)
        t0 = time.perf_counter()
        old_modes = result["backends"].get(name, {}).get("modes", {}) if args.merge else {}
        entry = {"fingerprint": backend.fingerprint(), "modes": {m: dict(v) for m, v in old_modes.items()}}
        for mode in modes:
            if mode is Mode.GUNDAM:
                continue
            entry["modes"].setdefault(mode.value, {}).update(
                {
                    script: search(backend, name, mode, script, texts[script], args, log)
                    for script in args.scripts
                }
            )
        if Mode.LARGE.value in entry["modes"]:
            gundam = {}
            for script, rec in entry["modes"][Mode.LARGE.value].items():
                rec = dict(rec)
                rec["ratio"] = round(rec["text_tokens_per_page"] / Mode.GUNDAM.positions, 2)
                rec["same_pages_as"] = "large"
                gundam[script] = rec
            entry["modes"][Mode.GUNDAM.value] = gundam
        entry["minutes"] = round((time.perf_counter() - t0) / 60, 1)
        result["backends"][name] = entry
        args.out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
        log(f"{name}: done in {entry['minutes']} min → {args.out}")
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    sys.exit(main())
