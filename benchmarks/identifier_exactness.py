"""Never a confident wrong identifier: is every identifier on a verified line exact? (issue 18)

Loads the held-out incident chat (benchmarks/data/identifier_corpus.json, made by
make_identifier_corpus.py: sequential tickets, run numbers, URLs with numeric tails,
versions, migrations, hashes, instance ids, orders, dates, addresses, prices, flights,
accented names) into a real `OpticalMemory` (SQLite in a temporary folder, the `cpu`
decoder with its reading aids), pages it at Small (`compress(flush=True)`), reads every page
back, ages every page to Tiny and reads them again (`recall_page(id, refresh=True)`).

Occurrences: every identifier planted in a turn (the corpus's `ids`, found in the content on
word boundaries), plus every string `optimem.pages.verbatim.extract` finds in the turn that does not
overlap a planted one. Each occurrence is looked up in the page layout (the line boxes whose
[start, end) offsets in the turn's content cover it) and judged on the recalled text of those
lines (`Recall.lines`, joined with nothing or a space when the occurrence wraps):

- exact: the identifier stands in the recalled line(s) as often as in the source line(s),
  with no letter or digit glued to either end (`pay-10` inside `pay-1010` is not exact);
- wrong: not exact, on a line marked verified (`Recall.verified` True): must be zero;
- unverified: not exact, on a line marked unverified (False);
- unflagged: not exact, on a line whose page keeps no check (None), or in a tree whose
  `Recall` has no per-line flags at all (`Recall.lines` absent: the text is split at line
  breaks and every line counts as unflagged).

An occurrence over several lines counts as verified only when every one of them is. The JSON
lists every wrong occurrence (and a few of the others) with its recalled line(s) and whether its
words are right apart from case and punctuation (`same_words`: what a case-folded,
punctuation-blind line check cannot see); the table's "wrong" column gives that count in
brackets.

`--baseline TREE` runs the same measurement in the same invocation under another checkout
(`git worktree add /tmp/base <commit>`), each tree in its own process with PYTHONPATH=TREE,
each building its own memory from the same corpus: before and after side by side.

    python benchmarks/identifier_exactness.py --out benchmarks/results/identifier_exactness.json \
        --baseline /tmp/base
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "data" / "identifier_corpus.json"
OUTCOMES = ("exact", "wrong", "unverified", "unflagged")


@dataclass(frozen=True)
class Occurrence:
    """One identifier at [start, end) of turn `turn` (index in the corpus) of a `kind`."""

    turn: int
    start: int
    end: int
    value: str
    kind: str


# -- finding and judging (pure) -----------------------------------------------------------------


def _pattern(value: str) -> re.Pattern[str]:
    """`value` with no letter or digit glued to an end that is itself a letter or digit."""
    head = r"(?<![^\W_])" if value[:1].isalnum() else ""
    tail = r"(?![^\W_])" if value[-1:].isalnum() else ""
    return re.compile(head + re.escape(value) + tail)


def count(value: str, text: str) -> int:
    """How often `value` stands in `text` as a whole token (see `_pattern`)."""
    return len(_pattern(value).findall(text))


def occurrences(turns: list[dict]) -> list[Occurrence]:
    """Planted identifiers (each place they stand), then extracted strings that overlap none."""
    from optimem.pages.verbatim import extract

    out: list[Occurrence] = []
    for i, turn in enumerate(turns):
        content = turn["content"]
        taken = [False] * len(content)
        found: list[Occurrence] = []
        kinds = {}
        for item in turn.get("ids", []):
            kinds.setdefault(item["value"], item["family"])
        for value in sorted(kinds, key=len, reverse=True):  # FL-304A before FL-304
            for m in _pattern(value).finditer(content):
                if not any(taken[m.start() : m.end()]):
                    taken[m.start() : m.end()] = [True] * (m.end() - m.start())
                    found.append(Occurrence(i, m.start(), m.end(), value, kinds[value]))
        for item in extract(content):
            end = item.offset + len(item.value)
            if not any(taken[item.offset : end]):
                found.append(Occurrence(i, item.offset, end, item.value, f"extract:{item.kind}"))
        out.extend(sorted(found, key=lambda o: o.start))
    return out


def combine(flags: list[bool | None]) -> bool | None:
    """One flag for an occurrence over several lines: verified only if every line is."""
    if not flags or any(f is None for f in flags):
        return None
    return all(flags)


def _words(text: str) -> list[str]:
    """Words as a case-folded, punctuation-blind comparison sees them (NFKC, casefold)."""
    return [unicodedata.normalize("NFKC", w).casefold() for w in re.findall(r"\w+", text)]


def same_words(value: str, recalled: list[str]) -> bool:
    """True when the recalled line(s) hold `value`'s words in a row, case and punctuation aside:
    a miss that only a check blind to case and punctuation would let through."""
    want, have = _words(value), _words(" ".join(recalled))
    return bool(want) and any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1))


def classify(value: str, source: str, recalled: list[str], verified: bool | None) -> str:
    """'exact', 'wrong' (verified but not exact), 'unverified' or 'unflagged' (no flag)."""
    got = max(count(value, "".join(recalled)), count(value, " ".join(recalled)))
    if got >= max(1, count(value, source)):
        return "exact"
    return {True: "wrong", False: "unverified", None: "unflagged"}[verified]


def summarise(judged: list[tuple[Occurrence, str, bool | None]]) -> dict:
    """Counts and shares of one mode: outcomes, and occurrences by the flag of their lines."""
    n = len(judged)
    outcomes = Counter(outcome for _, outcome, _ in judged)
    on = {
        "verified": [o for _, o, f in judged if f is True],
        "unverified": [o for _, o, f in judged if f is False],
        "unflagged": [o for _, o, f in judged if f is None],
    }
    by_kind: dict[str, Counter] = {}
    for occ, outcome, _ in judged:
        by_kind.setdefault(occ.kind, Counter())[outcome] += 1
    verified = on["verified"]
    return {
        "occurrences": n,
        **{k: outcomes.get(k, 0) for k in OUTCOMES},
        "shares": {k: round(outcomes.get(k, 0) / n, 4) if n else None for k in OUTCOMES},
        "on_verified_lines": len(verified),
        "exact_on_verified_lines": round(verified.count("exact") / len(verified), 4) if verified else None,
        "on_unverified_lines": len(on["unverified"]),
        "exact_on_unverified_lines": on["unverified"].count("exact"),
        "on_unflagged_lines": len(on["unflagged"]),
        "by_kind": {k: dict(v) for k, v in sorted(by_kind.items())},
    }


# -- the child: one tree, one memory, both modes ----------------------------------------------


def _lines_of(recall, layout_len: int) -> tuple[list[str], list[bool | None], bool]:
    """Recalled lines and their flags, and whether this tree gives per-line flags at all."""
    lines = getattr(recall, "lines", None)
    flags = getattr(recall, "verified", None)
    if not lines or flags is None or len(flags) != len(lines):
        return recall.text.split("\n"), [None] * layout_len, False
    return list(lines), list(flags), True


def measure(corpus: Path) -> dict:
    from optimem import Mode, OpticalMemory
    from optimem.aging.policies import AgingPlan

    turns = json.loads(corpus.read_text(encoding="utf-8"))["turns"]
    occs = occurrences(turns)
    doc: dict = {"turns": len(turns), "occurrences": len(occs), "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        mem = OpticalMemory(str(Path(tmp) / "ids.db"), backend="cpu", decode="lazy", policy="none")
        session = mem.session("incident")
        ids = session.add_turns([(t["role"], t["content"]) for t in turns])
        index = {tid: i for i, tid in enumerate(ids)}
        session.compress(flush=True)
        pages = session.pages()
        sources = [session.page_source(p.id) or "" for p in pages]
        pngs = [hashlib.sha256(session.page_png(p.id)).hexdigest() for p in pages]
        doc["pages"] = len(pages)
        doc["pages_distinct"] = len(set(sources)) == len(pages) and len(set(pngs)) == len(pages)
        doc["created_modes"] = sorted({p.mode.value for p in pages})
        layouts = {p.id: mem.store.page_blobs(p.id).layout for p in pages}
        for mode in (Mode.SMALL, Mode.TINY):
            if mode is Mode.TINY:
                with mem.store.transaction():
                    mem.pager.age(session.id, AgingPlan({p.id: Mode.TINY for p in pages}, 0))
            where: dict[int, list[tuple[str, bool | None]]] = {}  # corpus turn -> rows
            boxes: dict[int, list] = {}
            flagged = misaligned = 0
            seconds = []
            for page in pages:
                t0 = time.perf_counter()
                recall = session.recall_page(page.id, refresh=True)
                seconds.append(time.perf_counter() - t0)
                assert recall.mode is mode, (recall.mode, mode)
                layout = layouts[page.id]
                lines, flags, has_flags = _lines_of(recall, len(layout))
                flagged += has_flags
                if len(lines) != len(layout):
                    misaligned += 1  # a tree without per-line text whose text lost a break
                    lines = (lines + [""] * len(layout))[: len(layout)]
                for box, line, flag in zip(layout, lines, flags, strict=True):
                    i = index[box.turn_id]
                    boxes.setdefault(i, []).append(box)
                    where.setdefault(i, []).append((line, flag))
            judged = []
            examples: dict[str, list] = {"wrong": [], "unverified": [], "unflagged": []}
            for occ in occs:
                rows = [
                    (box, row)
                    for box, row in zip(boxes.get(occ.turn, []), where.get(occ.turn, []), strict=True)
                    if box.start < occ.end and box.end > occ.start
                ]
                recalled = [line for _, (line, _) in rows]
                flag = combine([f for _, (_, f) in rows])
                if rows:
                    lo, hi = min(b.start for b, _ in rows), max(b.end for b, _ in rows)
                    source = turns[occ.turn]["content"][lo:hi]
                else:  # typeset nowhere: cannot be exact
                    source, flag = occ.value, None
                outcome = classify(occ.value, source, recalled, flag)
                judged.append((occ, outcome, flag))
                if outcome == "wrong" or (outcome in examples and len(examples[outcome]) < 12):
                    examples[outcome].append(
                        {"value": occ.value, "kind": occ.kind, "recalled": recalled}
                        | {"same_words": same_words(occ.value, recalled)}
                    )
            doc["modes"][mode.value] = summarise(judged) | {
                "wrong_same_words": sum(e["same_words"] for e in examples["wrong"]),
                "pages_with_line_flags": flagged,
                "pages_misaligned": misaligned,
                "seconds_per_page": round(sum(seconds) / len(seconds), 2),
                "examples": examples,
            }
        mem.close()
    return doc


# -- the parent: trees, table, JSON -------------------------------------------------------------


def run_tree(tree: Path, corpus: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--corpus", str(corpus)]
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if done.returncode != 0:
        raise SystemExit(f"measurement failed under {tree}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict]) -> str:
    head = (
        f"{'tree':9} {'mode':5} {'ids':>4} {'exact':>13} {'wrong':>8} {'unverified':>10} "
        f"{'unflagged':>9} {'on verified':>11} {'exact there':>11}  s/page"
    )
    out = [head]
    for label, doc in results.items():
        for mode, m in doc["modes"].items():
            exact_v = (
                "—" if m["exact_on_verified_lines"] is None else f"{100 * m['exact_on_verified_lines']:.1f}%"
            )
            out.append(
                f"{label:9} {mode:5} {m['occurrences']:>4} {m['exact']:>5} ({100 * m['shares']['exact']:5.1f}%) "
                f"{m['wrong']:>4} ({m.get('wrong_same_words', 0)}) {m['unverified']:>10} {m['unflagged']:>9} {m['on_verified_lines']:>11} "
                f"{exact_v:>11}  {m['seconds_per_page']}"
            )
        if not any(m["pages_with_line_flags"] for m in doc["modes"].values()):
            out.append(f"{label:9} (no per-line flags in this tree: every line counts as unflagged)")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--baseline", type=Path, help="another checkout of optimem to run side by side")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.corpus.resolve())))
        return
    sys.path.insert(0, str(ROOT / "scripts"))
    from optimem.bench.machine import cores, cpu_name

    trees = {"now": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    results = {}
    for label, tree in trees.items():
        t0 = time.perf_counter()
        results[label] = run_tree(tree, args.corpus.resolve()) | {"tree": str(tree)}
        print(f"{label}: measured in {time.perf_counter() - t0:.0f} s", flush=True)
    print(table(results))
    doc = {
        "machine": f"{cpu_name()}, {cores()} cores",
        "load_average_at_end": os.getloadavg()[0],
        "decoder": "cpu (tesseract + rapidocr) with reading aids, SQLite store",
        "corpus": str(args.corpus),
        "matching": "exact = the identifier stands in its recalled line(s) as often as in the "
        "source line(s), no letter or digit glued to either end; wrong = not exact on a line "
        "marked verified; unverified = not exact on a line marked unverified; unflagged = not "
        "exact on a line without a flag",
        "modes": "typeset at Small (compress(flush=True)), read; every page aged to Tiny, read again",
        "occurrence": asdict(Occurrence(0, 0, 0, "value", "family or extract:kind")),
        "results": results,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
