"""Page load time of the memory viewer (/ui) for a 1,000-turn session: server time per page and browser load.

    python benchmarks/ui_load.py --out out/ui_load.json [--turns 1000] [--backend cpu] [--screenshot docs/img/viewer.png]

Builds one session of `--turns` turns (the chat embedded in optimem, repeated) by adding
turns in batches of 50 and compressing after each, with the budget policy, so pages age
down the ladder as in real use; then reads every page once with the backend (what the
background decoder would have cached; `search(..., wait=True)`). Starts `optimem serve` on a
free loopback port over that file and measures, for each viewer page: the time to the full
response with httpx (median, p95, max of `--repeat` runs after one warm-up), and in the system
Chromium the navigation's response end and load event (every thumbnail loaded). Prints a table
and writes JSON. The test-double backend is refused: figures come from a real OCR's cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import httpx

from optimem import OpticalMemory
from optimem.server.process import Server
from optimem.turns import load_chat

TARGET_MS = 300.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def build(db: Path, session: str, turns: int, backend: str, budget: int) -> dict:
    """The session, made as a chat would make it; returns how long that took and what it holds."""
    path = resources.files("optimem.data").joinpath("default_chat.json")
    chat = load_chat(Path(str(path)))
    rows = [
        {"role": chat[i % len(chat)]["role"], "content": f"[{i + 1}] " + chat[i % len(chat)]["content"]}
        for i in range(turns)
    ]
    t0 = time.perf_counter()
    with OpticalMemory(db, backend=backend, policy=f"budget:{budget}", decode="lazy") as mem:
        s = mem.session(session)
        for i in range(0, turns, 50):
            s.add_turns(rows[i : i + 50])
            s.compress()
        built = time.perf_counter() - t0
        s.search("warm the cache", wait=True)  # every page read once at its current mode
        pages = s.pages()
        return {
            "build_s": round(built, 1),
            "decode_s": round(time.perf_counter() - t0 - built, 1),
            "pages": len(pages),
            "modes": {m: sum(p.mode.value == m for p in pages) for m in {p.mode.value for p in pages}},
            "middle_page": pages[len(pages) // 2].id,
        }


def server_times(url: str, paths: dict[str, str], repeat: int) -> dict[str, dict]:
    out = {}
    with httpx.Client(base_url=url, timeout=60) as c:
        for name, path in paths.items():
            c.get(path).raise_for_status()  # warm-up
            times, size = [], 0
            for _ in range(repeat):
                t0 = time.perf_counter()
                r = c.get(path)
                times.append(1000 * (time.perf_counter() - t0))
                r.raise_for_status()
                size = len(r.content)
            times.sort()
            out[name] = {
                "path": path,
                "bytes": size,
                "median_ms": round(statistics.median(times), 1),
                "p95_ms": round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 1),
                "max_ms": round(times[-1], 1),
            }
    return out


def browser_times(
    url: str, paths: dict[str, str], repeat: int, shots: dict[str, str], full_page: bool = False
) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name, path in paths.items():
            runs = []
            for _ in range(repeat + 1):
                page.goto(url + path, wait_until="load")
                nav = page.evaluate("() => performance.getEntriesByType('navigation')[0].toJSON()")
                start = nav["startTime"]
                runs.append(
                    (
                        nav["responseEnd"] - start,
                        nav["domContentLoadedEventEnd"] - start,
                        nav["loadEventEnd"] - start,
                    )
                )
            runs = runs[1:]
            out[name] = {
                "response_end_ms": round(statistics.median(r[0] for r in runs), 1),
                "dom_content_loaded_ms": round(statistics.median(r[1] for r in runs), 1),
                "load_event_ms": round(statistics.median(r[2] for r in runs), 1),
            }
            if name in shots:  # every thumbnail loaded, not only those in view
                page.evaluate("() => document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
                if full_page:  # a viewport as tall as the page, so nothing is painted off screen
                    height = page.evaluate("() => document.documentElement.scrollHeight")
                    page.set_viewport_size({"width": 1400, "height": height})
                page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth)")
                page.wait_for_timeout(500)
                page.screenshot(path=shots[name])
                page.set_viewport_size({"width": 1400, "height": 1000})
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=1000)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--budget", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--db", help="reuse this memory file (built when missing)")
    ap.add_argument("--screenshot", help="save the timeline as seen in the browser here")
    ap.add_argument("--page-screenshot", help="save the middle page's view here")
    ap.add_argument(
        "--full-page", action="store_true", help="screenshots of the whole page, not the viewport"
    )
    ap.add_argument("--out", default="ui_load.json")
    args = ap.parse_args()
    if args.backend == "test-double":
        sys.exit("the test-double backend never produces speed figures; use cpu, tesseract or rapidocr")

    db = Path(args.db) if args.db else Path(tempfile.mkdtemp()) / "viewer.db"
    session = "big"
    facts = build(db, f"public/{session}", args.turns, args.backend, args.budget) if not db.exists() else None
    if facts is None:
        with OpticalMemory(db, backend=args.backend) as mem:
            pages = mem.session(f"public/{session}").pages()
        facts = {
            "pages": len(pages),
            "modes": {m: sum(p.mode.value == m for p in pages) for m in {p.mode.value for p in pages}},
            "middle_page": pages[len(pages) // 2].id,
            "reused": True,
        }
    mid = facts["middle_page"]
    paths = {
        "sessions": "/ui/",
        "timeline": f"/ui/s/{session}",
        "timeline.json": f"/ui/s/{session}?format=json",
        "page": f"/ui/s/{session}/pages/{mid}",
        "search": f"/ui/s/{session}/search?q=cutover+ticket",
        "thumbnail": f"/ui/s/{session}/pages/{mid}.png",
    }
    shots = {k: v for k, v in (("timeline", args.screenshot), ("page", args.page_screenshot)) if v}
    srv = Server(db, "--policy", f"budget:{args.budget}", "--rate-per-minute", "0", backend=args.backend)
    url = srv.start(timeout=120).url
    try:
        server = server_times(url, paths, args.repeat)
        browser = browser_times(url, {k: paths[k] for k in ("sessions", "timeline", "page", "search")},
                                max(3, args.repeat // 4), shots, args.full_page)  # fmt: skip
    finally:
        srv.stop(timeout=60)

    machine = f"{os.cpu_count()} vCPUs, {platform.machine()}, Python {platform.python_version()}"
    machine += f", load average {os.getloadavg()[0]:.1f} when measured"
    head = f"optimem viewer load: {args.turns:,} turns, {facts['pages']} pages, decoder {args.backend}"
    print(f"{head}; {machine}")
    print(f"server: time to the whole response (httpx, {args.repeat} runs); browser: Chromium navigation")
    print(f"{'page':<14} {'bytes':>9} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} {'DOM ready ms':>13} "
          f"{'load event ms':>14}  under {TARGET_MS:.0f} ms")  # fmt: skip
    for name, row in server.items():
        b = browser.get(name, {})
        ok = (
            ""
            if name in ("timeline.json", "thumbnail")
            else ("met" if row["median_ms"] < TARGET_MS else "MISSED")
        )
        print(f"{name:<14} {row['bytes']:>9,} {row['median_ms']:>10} {row['p95_ms']:>8} {row['max_ms']:>8} "
              f"{b.get('dom_content_loaded_ms', ''):>13} {b.get('load_event_ms', ''):>14}  {ok}")  # fmt: skip
    doc = {
        "schema": "optimem.ui_load/1",
        "turns": args.turns,
        "backend": args.backend,
        "budget": args.budget,
        "machine": machine,
        "target_ms": TARGET_MS,
        "session": facts,
        "server": server,
        "browser": browser,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
