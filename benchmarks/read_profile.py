"""Where the time of reading a page goes, by stage, cold and warm; and what came back exactly.

Builds one SQLite memory (pages typeset by the memory itself, as a user's would be) with four
kinds of page: LoCoMo prose on a Small page, prose aged to Tiny, code and tool output
(benchmarks/data/code_corpus.json) and Chinese (the embedded chat's Chinese turns). Each page
is then read uncached (`Session.recall_page(id, refresh=True)`, the `cpu` decoder with its
reading aids) in fresh processes:

- cold: the first call of a fresh process (what a CLI call or a new worker pays), and the
  whole process from start to the text (imports and opening the store included);
- warm: after the process has read another page (what a running service pays);
- plain: a plain tesseract read of the same page in the same warm process (`tesseract`
  backend, no reading aids), the yardstick of issue 17's ratio targets.

Stages are exclusive wall times, taken by wrapping the functions that do each one:
loading (spelling dictionary, word list, engines), first reading, correction (line checks and
the search), re-reading (the other engine on lines correction could not fix) and repair
(the verbatim side channel). Each row also says how many lines came back exact (their check
passes) and the fidelity against the page's source.

`--baseline TREE` runs the same children under another checkout of optimem (for example
`git worktree add /tmp/base <commit>`) in the same invocation, on the same pages: before and
after side by side. `--repeat N` reads each case N times (fresh processes each) and reports
medians.

    python benchmarks/read_profile.py --out benchmarks/results/read_profile.json --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_json  # benchmarks/results_file.py (this script's folder is on sys.path)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "42.json"
KINDS = ("small", "tiny", "code", "cjk")

#: (module, qualified name, stage): the functions whose time is each stage's.
STAGES = (
    ("optimem.reading.correction", "speller", "load"),
    ("optimem.aids.speller", "_speller_for", "load"),
    ("optimem.aids.lexicon", "dictionary_words", "load"),
    ("optimem.backends.rapidocr", "RapidOCRBackend._engine_list", "load"),  # older trees
    ("optimem.backends.rapidocr", "RapidOCRBackend._recogniser_list", "load"),
    ("optimem.backends.rapidocr", "RapidOCRBackend._page_engine", "load"),
    ("optimem.backends.tesseract", "TesseractBackend._api", "load"),
    ("optimem.backends.cpu", "CpuBackend.decode", "first reading"),
    ("optimem.backends.cpu", "CpuBackend.decode_many", "first reading"),
    ("optimem.backends.cpu", "CpuBackend.alternates", "re-reading"),
    ("optimem.reading.proofread", "proofread", "correction"),
    ("optimem.reading.recall", "repair", "repair"),
)


# -- the child: one process, one page read ---------------------------------------------------


def _instrument() -> dict[str, float]:
    """Wrap each stage's functions so their exclusive wall time adds up per stage."""
    import functools
    import importlib
    import threading

    spent: dict[str, float] = {}
    local = threading.local()

    def wrap(fn, stage):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            stack = getattr(local, "stack", None)
            if stack is None:
                stack = local.stack = []
            stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                total = time.perf_counter() - t0
                inner = stack.pop()
                spent[stage] = spent.get(stage, 0.0) + total - inner
                if stack:
                    stack[-1] += total

        return timed

    for module_name, qualname, stage in STAGES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner = module
        *path, name = qualname.split(".")
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, name):
            continue
        setattr(owner, name, wrap(getattr(owner, name), stage))
    return spent


def child(args: argparse.Namespace) -> None:
    started = float(os.environ["READ_PROFILE_T0"])
    spent = _instrument()
    from optimem import OpticalMemory
    from optimem.reading.fidelity import fidelity

    mem = OpticalMemory(args.db, backend="cpu", decode="lazy")
    session = mem.session(args.session)
    if args.warm_with is not None:
        session.recall_page(args.warm_with, refresh=True)
        spent.clear()
    profile = cProfile.Profile() if args.profile else None
    t0 = time.perf_counter()
    if profile:
        profile.enable()
    recall = session.recall_page(args.page, refresh=True)
    if profile:
        profile.disable()
    seconds = time.perf_counter() - t0
    source = session.page_source(args.page) or ""
    out = {
        "seconds": seconds,
        "process_seconds": time.time() - started,
        "stages": {k: round(v, 4) for k, v in spent.items()},
        "lines_exact": recall.lines_exact,
        "lines_checked": recall.lines_checked,
        "fidelity": fidelity(recall.text, source),
        "chars": len(source),
        "text": recall.text,
    }
    if args.plain:
        plain = OpticalMemory(args.db, backend="tesseract", decode="lazy")
        from optimem.backends.base import Decoded  # noqa: F401  (import cost outside the timing)

        page = plain.store.page(args.session, args.page)
        page_in = plain.decoder.page_input(page)
        backend = plain.backend
        backend.decode(page_in)  # the engine's own first use, outside the timing
        t1 = time.perf_counter()
        decoded = backend.decode(page_in)
        out["plain_seconds"] = time.perf_counter() - t1
        out["plain_fidelity"] = fidelity(decoded.text, source)
        plain.close()
    if profile:
        buf = io.StringIO()
        pstats.Stats(profile, stream=buf).sort_stats("cumulative").print_stats(30)
        out["profile"] = buf.getvalue()
    mem.close()
    print(json.dumps(out))


# -- the parent: the pages, the runs, the table ------------------------------------------------


def build(db: str, chat: Path = LOCOMO) -> dict[str, tuple[str, int, int]]:
    """The memory and, per kind, (session, page to read, page to warm up with)."""
    from optimem import OpticalMemory
    from optimem.aging.policies import AgingPlan
    from optimem.bench.datasets import load, load_default
    from optimem.layout import is_cjk
    from optimem.modes import Mode

    mem = OpticalMemory(db, backend="cpu", decode="lazy", policy="none")
    cases: dict[str, tuple[str, int, int]] = {}
    prose = mem.session("prose")
    prose.add_turns([(t.role, t.content) for t in load(str(chat)).turns[:260]])
    prose.compress(flush=True)
    ids = [p.id for p in prose.pages()][:-1]  # full pages (the last one holds what was left)
    with mem.store.transaction():
        mem.pager.age("prose", AgingPlan({ids[3]: Mode.TINY, ids[2]: Mode.TINY}, 0))
    cases["small"] = ("prose", ids[1], ids[0])
    cases["tiny"] = ("prose", ids[3], ids[2])
    code = mem.session("code")
    snippets = json.loads((HERE / "data" / "code_corpus.json").read_text())["snippets"]
    code.add_turns([(s.get("role", "assistant"), s["text"]) for s in snippets])
    code.compress(flush=True)
    code_ids = [p.id for p in code.pages()]
    cases["code"] = ("code", code_ids[0], code_ids[-1])
    cjk = mem.session("cjk")
    cjk.add_turns([(t.role, t.content) for t in load_default().turns if is_cjk(t.content)])
    cjk.compress(flush=True)
    cjk_ids = [p.id for p in cjk.pages()]
    cases["cjk"] = ("cjk", cjk_ids[0], ids[0])  # warmed on prose: the CJK engine's first use counts
    if len(cjk_ids) > 1:
        cases["cjk"] = ("cjk", cjk_ids[0], cjk_ids[1])
    described = {
        kind: {"session": s, "page": p, "mode": mem.store.page(s, p).mode.value}
        for kind, (s, p, _) in cases.items()
    }
    print("pages:", json.dumps(described), file=sys.stderr)
    mem.close()
    return cases


def build_under(tree: Path, db: str, chat: Path) -> dict[str, tuple[str, int, int]]:
    """`build` run by another checkout (its own layout format), in a child process."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--build", db, "--chat", str(chat)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"building the pages failed under {tree}:\n{done.stderr[-3000:]}")
    return {k: tuple(v) for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}


def run_child(tree: Path, db: str, case: tuple[str, int, int], warm: bool, profile: bool) -> dict:
    session, page, warm_with = case
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--db", db, "--session", session,
           "--page", str(page)]  # fmt: skip
    if warm:
        cmd += ["--warm-with", str(warm_with), "--plain"]
    if profile:
        cmd += ["--profile"]
    env = dict(os.environ, PYTHONPATH=str(tree), READ_PROFILE_T0=repr(time.time()))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"child failed under {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(runs: list[dict]) -> dict:
    med = statistics.median
    stages = sorted({k for r in runs for k in r["stages"]})
    out = {
        "seconds": round(med(r["seconds"] for r in runs), 3),
        "process_seconds": round(med(r["process_seconds"] for r in runs), 3),
        "stages": {k: round(med(r["stages"].get(k, 0.0) for r in runs), 3) for k in stages},
        "lines_exact": runs[0]["lines_exact"],
        "lines_checked": runs[0]["lines_checked"],
        "fidelity": round(runs[0]["fidelity"], 4),
        "chars": runs[0]["chars"],
        "same_text_every_run": len({r["text"] for r in runs}) == 1,
        "text_sha1": hashlib.sha1(runs[0]["text"].encode()).hexdigest()[:12],
    }
    if "plain_seconds" in runs[0]:
        out["plain_seconds"] = round(med(r["plain_seconds"] for r in runs), 3)
        out["plain_fidelity"] = round(runs[0]["plain_fidelity"], 4)
        out["ratio_to_plain"] = round(out["seconds"] / out["plain_seconds"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--build", help=argparse.SUPPRESS)
    ap.add_argument("--db")
    ap.add_argument("--session")
    ap.add_argument("--page", type=int)
    ap.add_argument("--warm-with", type=int)
    ap.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--baseline", type=Path, help="another checkout of optimem to run side by side")
    ap.add_argument("--chat", type=Path, default=LOCOMO, help="LoCoMo conversation for the prose pages")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.build:
        print(json.dumps(build(args.build, args.chat)))
        return
    sys.path.insert(0, str(HERE.parent / "scripts"))
    from optimem.bench.machine import cores, cpu_name

    trees = {"now": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    rows = []
    cold_profile = ""
    with tempfile.TemporaryDirectory() as tmp:
        # each tree reads pages it typeset itself (the same turns, so the same pages and ids)
        dbs = {label: str(Path(tmp) / f"pages-{label}.db") for label in trees}
        made = {label: build_under(tree, dbs[label], args.chat) for label, tree in trees.items()}
        cases = made["now"]
        if any(m != cases for m in made.values()):
            raise SystemExit(f"the trees typeset different pages: {made}")
        print(f"{'tree':8} {'page':6} {'when':5} {'recall s':>8} {'process s':>9} {'plain s':>7} {'ratio':>5} "
              f"{'lines exact':>11} {'fidelity':>8}  stages (s)")  # fmt: skip
        for kind in args.kinds.split(","):
            for warm in (False, True):
                for label, tree in trees.items():
                    runs = []
                    for k in range(args.repeat):
                        profile = kind == "small" and not warm and label == "now" and k == 0
                        runs.append(run_child(tree, dbs[label], cases[kind], warm, profile))
                        if profile:
                            cold_profile = runs[-1].pop("profile", "")
                    row = {"tree": label, "page": kind, "when": "warm" if warm else "cold"} | summarise(runs)
                    rows.append(row)
                    stages = ", ".join(f"{k} {v:.2f}" for k, v in row["stages"].items())
                    print(f"{label:8} {kind:6} {row['when']:5} {row['seconds']:8.2f} {row['process_seconds']:9.2f} "
                          f"{row.get('plain_seconds', float('nan')):7.2f} {row.get('ratio_to_plain', float('nan')):5.1f} "
                          f"{row['lines_exact']:>5}/{row['lines_checked']:<5} {100 * row['fidelity']:7.2f}%  {stages}",
                          flush=True)  # fmt: skip
    same = {
        f"{kind} {when}": len({r["text_sha1"] for r in rows if r["page"] == kind and r["when"] == when}) == 1
        for kind in args.kinds.split(",")
        for when in ("cold", "warm")
        if len(trees) > 1  # with one tree there is nothing to compare
    }
    if same:
        print("same text in every tree:", ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in same.items()))
    doc = {
        "machine": f"{cpu_name()}, {cores()} cores",
        "load_average_at_end": os.getloadavg()[0],
        "decoder": "cpu (tesseract + rapidocr) with reading aids; plain = tesseract alone, no aids",
        "inputs": "distinct pages, one of each kind; every row reads the same pages; medians of "
        f"{args.repeat} fresh processes per row",
        "trees": {k: str(v) for k, v in trees.items()},
        "rows": rows,
        "same_text_in_every_tree": same,
        "cold_small_profile": cold_profile,
    }
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
