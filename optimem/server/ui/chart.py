"""Tokens over the conversation: the series (full history against what the model sees now) and its SVG geometry."""

from __future__ import annotations

from typing import Any

from optimem import Page, Turn

#: The benchmark's plot colours per mode (optimem/bench/report.py), so the figures read alike.
MODE_COLOURS = {
    "gundam": "#4c2a85",
    "large": "#1f77b4",
    "base": "#2ca02c",
    "small": "#ff7f0e",
    "tiny": "#d62728",
    "text": "#7f7f7f",
}

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 62, 12, 14, 44
#: Most points a polyline gets (about two per pixel column); the JSON keeps every turn.
MAX_POINTS = 400


def series(turns: list[Turn], pages: list[Page]) -> dict[str, Any]:
    """Cumulative tokens at each turn: `full` (every turn as text) and `seen` (turns still kept as
    text at their text tokens, each page at its current positions once its last turn is reached),
    with `bands`: which stretch of turns each page (or the recent text) covers, and its mode."""
    turns = sorted(turns, key=lambda t: t.seq)
    index = {t.id: i for i, t in enumerate(turns)}
    page_end: dict[int, list[Page]] = {}
    bands: list[dict[str, Any]] = []
    for page in pages:
        spots = [index[t] for t in page.turn_ids if t in index]
        if not spots:
            continue
        page_end.setdefault(max(spots), []).append(page)
        bands.append(
            {"from": min(spots) + 1, "to": max(spots) + 1, "mode": page.mode.value, "page_id": page.id}
        )
    full, seen = [], []
    total = shown = 0
    for i, turn in enumerate(turns):
        total += turn.text_tokens
        if not turn.paged:
            shown += turn.text_tokens
        shown += sum(p.positions for p in page_end.get(i, ()))
        full.append(total)
        seen.append(shown)
    unpaged = [i + 1 for i, t in enumerate(turns) if not t.paged]
    if unpaged:
        bands.append({"from": unpaged[0], "to": unpaged[-1], "mode": "text", "page_id": None})
    return {"turns": len(turns), "full": full, "seen": seen, "bands": bands}


def _ticks(top: int) -> list[int]:
    if top <= 0:
        return [0]
    raw = top / 4
    mag = 10 ** (len(str(int(raw))) - 1)
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [int(step * k) for k in range(int(top // step) + 1)]


def geometry(data: dict[str, Any], budget: int | None = None) -> dict[str, Any]:
    """Where to draw `series(...)` in a WIDTH × HEIGHT SVG: polyline points, bands, ticks."""
    n = max(data["turns"], 1)
    top = max([*data["full"], budget or 0, 1])
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(turn: float) -> float:
        return round(LEFT + plot_w * (turn - 1) / max(n - 1, 1), 1)

    def y(tokens: float) -> float:
        return round(TOP + plot_h * (1 - tokens / top), 1)

    every = max(1, -(-n // MAX_POINTS))
    keep = sorted({*range(0, n, every), n - 1}) if data["turns"] else []

    def points(values: list[int]) -> str:
        return " ".join(f"{x(i + 1)},{y(values[i])}" for i in keep)

    bands = [
        {
            **b,
            "x": x(b["from"]),
            "w": max(x(b["to"]) - x(b["from"]), 1.5),
            "colour": MODE_COLOURS[b["mode"]],
        }
        for b in data["bands"]
    ]
    step = max(1, n // 8)
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": TOP,
        "bottom": HEIGHT - BOTTOM,
        "full": points(data["full"]),
        "seen": points(data["seen"]),
        "bands": bands,
        "band_y": HEIGHT - BOTTOM + 4,
        "y_ticks": [{"y": y(v), "label": f"{v:,}"} for v in _ticks(top)],
        "x_ticks": [{"x": x(t), "label": str(t)} for t in range(1, n + 1, step)],
        "budget": None if budget is None else {"y": y(budget), "label": f"budget {budget:,}"},
        "last": {
            "full": data["full"][-1] if data["full"] else 0,
            "seen": data["seen"][-1] if data["seen"] else 0,
        },
    }
