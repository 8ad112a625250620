"""The benchmark result as PNG plots (matplotlib, imported only when drawing)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..modes import LADDER, Mode

PLOTS = {
    "savings_fidelity": "savings_fidelity.png",
    "fidelity_age": "fidelity_age.png",
    "tokens_seen": "tokens_seen.png",
    "strict_survival": "strict_survival.png",
}

_MODE_COLOURS = {
    Mode.GUNDAM.value: "#4c2a85",
    Mode.LARGE.value: "#1f77b4",
    Mode.BASE.value: "#2ca02c",
    Mode.SMALL.value: "#ff7f0e",
    Mode.TINY.value: "#d62728",
}


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _stamp(fig, doc: dict[str, Any]) -> None:
    if doc["decoder"]["test_double"]:
        fig.text(
            0.5, 0.5, "TEST DOUBLE\nNOT A MEASUREMENT", ha="center", va="center", fontsize=34,
            color="red", alpha=0.35, rotation=20, weight="bold",
        )  # fmt: skip


def plot_savings_fidelity(doc: dict[str, Any], path: Path) -> Path:
    dec = doc["decoder"].get("label", doc["decoder"]["name"])
    fig = _figure(8, 5.2)
    ax = fig.add_subplot()
    for i, (name, v) in enumerate(doc["overall"]["modes"].items()):
        if v["fidelity"]["mean"] is None:
            continue
        ax.scatter(v["compression"], 100 * v["fidelity"]["mean"], s=70, color=_MODE_COLOURS[name], zorder=3,
                   label=f"ours, {name} (typeset at mode), {dec}")  # fmt: skip
        ax.annotate(name, (v["compression"], 100 * v["fidelity"]["mean"]), textcoords="offset points",
                    xytext=(6, -12 if i % 2 else 6), fontsize=8)  # fmt: skip
    rows = [r for c in doc["chats"] for r in c["optimem"]["page_rows"]]
    for name in {r["mode"] for r in rows}:
        rs = [r for r in rows if r["mode"] == name]
        ax.scatter([r["compression"] for r in rs], [100 * r["fidelity"] for r in rs], marker="s", s=22, alpha=0.6,
                   color=_MODE_COLOURS[name], label=f"ours, pages aged to {name} (budget run), {dec}")  # fmt: skip
    for mode, style in (("tiny", "--"), ("small", ":")):
        pts = [p for p in doc["paper_reference"]["points"] if p["mode"] == mode]
        ax.plot([p["compression"] for p in pts], [100 * p["precision"] for p in pts], style, marker="x",
                color=_MODE_COLOURS[mode], label=f"DeepSeek-OCR paper, Fox, {mode.title()} (decoder DeepSeek-OCR)")  # fmt: skip
    ax.set_xlabel("compression: text tokens ÷ vision positions of a page")
    ax.set_ylabel("fidelity (1 − edit distance / length), %")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.set_title(f"Fidelity against compression per mode (ours read by {dec})")
    ax.legend(fontsize=7, loc="lower left")
    _stamp(fig, doc)
    fig.savefig(path, format="png")
    return path


def plot_fidelity_age(doc: dict[str, Any], path: Path) -> Path:
    dec = doc["decoder"].get("label", doc["decoder"]["name"])
    fig = _figure(8, 4.8)
    ax = fig.add_subplot()
    rows = [r for c in doc["chats"] for r in c["optimem"]["page_rows"]]
    for mode in LADDER:
        rs = [r for r in rows if r["mode"] == mode.value]
        if rs:
            ax.scatter([r["turns_since"] for r in rs], [100 * r["fidelity"] for r in rs], s=24, alpha=0.7,
                       color=_MODE_COLOURS[mode.value], label=f"page now at {mode.value}")  # fmt: skip
    buckets = doc["overall"]["optimem"]["by_age"]
    xs, ys = [], []
    for b in buckets:
        rs = [r for r in rows if r["age_bucket"] == b["bucket"]]
        if rs and b["fidelity"]["mean"] is not None:
            xs.append(sum(r["turns_since"] for r in rs) / len(rs))
            ys.append(100 * b["fidelity"]["mean"])
    if xs:
        ax.plot(xs, ys, "-", color="black", lw=1.5, label="mean per age bucket")
    ax.set_xlabel("age: turns added after the page's last turn")
    ax.set_ylabel(f"fidelity, % (decoder {dec})")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.set_title(
        f"Forgetting curve: fidelity against age, budget {doc['config']['budget_tokens']:,} (decoder {dec})"
    )
    ax.legend(fontsize=8)
    _stamp(fig, doc)
    fig.savefig(path, format="png")
    return path


def plot_tokens_seen(doc: dict[str, Any], path: Path, max_chats: int = 6) -> Path:
    chats = doc["chats"][:max_chats]
    n = len(chats)
    cols = 1 if n == 1 else 2
    rows = (n + cols - 1) // cols
    fig = _figure(8 if cols == 1 else 12, 4.2 * rows)
    budget = doc["config"]["budget_tokens"]
    for i, chat in enumerate(chats):
        ax = fig.add_subplot(rows, cols, i + 1)
        b = chat["baselines"]
        x = list(range(1, chat["turns"] + 1))
        ax.plot(x, b["full_history"]["series"], color="grey", lw=2, label="full history")
        ax.plot(
            x, b["sliding_window"]["series"], color="#8c564b", lw=1.5, label=f"sliding window ({budget:,})"
        )
        ax.plot(x, chat["optimem"]["series"], color="#1f77b4", lw=2,
                label="optimem (budget policy; archive recall sees the same)")  # fmt: skip
        for name, r in chat["modes"].items():
            ax.plot(x, r["series"], "--", lw=0.9, color=_MODE_COLOURS[name], label=f"optimem, fixed {name}")
        ax.axhline(budget, color="black", lw=0.8, ls=":", label="budget")
        ax.set_xlabel("turn")
        ax.set_ylabel("tokens the model sees")
        ax.set_title(chat["name"])
        ax.grid(alpha=0.3)
        if i == 0:
            ax.legend(fontsize=7)
    fig.suptitle("Tokens the model sees over the conversation (pages at DeepSeek-OCR positions)")
    _stamp(fig, doc)
    fig.savefig(path, format="png")
    return path


def plot_strict_survival(doc: dict[str, Any], path: Path) -> Path:
    """Exact answer survival against savings: strict runs, the sliding window, the paper's Fox points."""
    dec = doc["decoder"].get("label", doc["decoder"]["name"])
    fig = _figure(8, 5.2)
    ax = fig.add_subplot()
    curve = doc["overall"]["window_curve"]
    text = doc["overall"]["text_tokens"]
    ax.plot([text / max(1, p["seen_tokens"]) for p in curve], [100 * (p["share"] or 0) for p in curve], "-", color="#8c564b",
            label="sliding window, same budget (exact answers)")  # fmt: skip
    runs = doc["overall"]["targets"]
    if runs:
        # what the model is shown within the budget; pages left out are reachable by recall
        xs = [t.get("savings_in_context") or t["savings"] for t in runs]
        for key, style, label in (
            ("exact", "o-", f"optimem, exact, every page by recall ({dec})"),
            ("exact_in_context", "s--", f"optimem, exact, only pages in context ({dec})"),
            ("loose", "^:", f"optimem, loose (fuzzy >= 0.9), by recall ({dec})"),
        ):
            ys = [100 * (t["survival"][key]["share"] or 0) for t in runs]
            ax.plot(xs, ys, style, color="#1f77b4", label=label)
    for mode, style in (("tiny", "x"), ("small", "+")):
        paper = [p for p in doc["paper_reference"]["points"] if p["mode"] == mode]
        ax.scatter([p["compression"] for p in paper], [100 * p["precision"] for p in paper], marker=style, s=50,
                   color=_MODE_COLOURS[mode],
                   label=f"DeepSeek-OCR paper, Fox, {mode.title()}: OCR precision at compression")  # fmt: skip
    ax.set_xlim(0.5, 25.5)
    ax.set_ylim(-2, 102)
    ax.set_xlabel("savings: text tokens ÷ tokens the model sees")
    ax.set_ylabel("answers found exactly, %")
    ax.grid(alpha=0.3)
    ax.set_title(f"Exact answer survival against savings (decoder {dec})")
    ax.legend(fontsize=7, loc="lower left")
    _stamp(fig, doc)
    fig.savefig(path, format="png")
    return path


def write_plots(doc: dict[str, Any], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "savings_fidelity": plot_savings_fidelity(doc, folder / PLOTS["savings_fidelity"]),
        "fidelity_age": plot_fidelity_age(doc, folder / PLOTS["fidelity_age"]),
        "tokens_seen": plot_tokens_seen(doc, folder / PLOTS["tokens_seen"]),
        "strict_survival": plot_strict_survival(doc, folder / PLOTS["strict_survival"]),
    }
