"""The benchmark result as text: the terminal table and the markdown report."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..modes import LADDER

BANNER = "!! TEST DOUBLE: NOT A MEASUREMENT (the backend reads the layout, not pixels) !!"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _n(x: int | float | None) -> str:
    return "n/a" if x is None else f"{x:,}"


def _s(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}s"


def _surv(s: dict[str, Any]) -> str:
    if not s["eligible"]:
        return "n/a"
    out = f"{s['survived']}/{s['eligible']} {_pct(s['share'])}"
    if s["not_measured"]:
        out += f" (+{s['not_measured']} not decoded)"
    return out


def _fid(f: dict[str, Any]) -> str:
    return "n/a" if f["mean"] is None else f"{_pct(f['mean'])} ({f['pages']}p)"


def _grid(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*headers), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join("  " + line for line in lines)


def _sections(doc: dict[str, Any], markdown: bool) -> list[tuple[str, str]]:
    """(title, table) pairs shared by the terminal table and the markdown report."""
    dec = doc["decoder"].get("label", doc["decoder"]["name"])
    cfg = doc["config"]
    out: list[tuple[str, str]] = []
    scopes = [("overall", doc["overall"])] if len(doc["chats"]) > 1 else []
    for chat in doc["chats"]:
        o, b = chat["optimem"], chat["baselines"]
        head = [
            "what the model sees",
            "tokens",
            "savings",
            "answers survive",
            f"fidelity [{dec}]",
            "ids exact (OCR / +verbatim)",
        ]
        ids = o["identifiers"]
        rows = [
            [
                "full history",
                _n(b["full_history"]["seen_tokens"]),
                "1.00x",
                _surv(b["full_history"]["answer_survival"]),
                "-",
                "-",
            ],
            [
                f"sliding window ({_n(cfg['budget_tokens'])})",
                _n(b["sliding_window"]["seen_tokens"]),
                _x(b["sliding_window"]["savings"]),
                _surv(b["sliding_window"]["answer_survival"]),
                "-",
                "-",
            ],
            [
                f"optimem {o['policy']}",
                _n(o["seen_tokens"]),
                _x(o["savings"]),
                _surv(o["answer_survival"]),
                _fid(o["fidelity"]),
                f"{_pct(ids['share_ocr'])} / {_pct(ids['share_with_verbatim'])} of {ids['total']}",
            ],
            [
                "archive recall (upper bound)",
                _n(b["archive"]["seen_tokens"]),
                _x(b["archive"]["savings"]),
                _surv(b["archive"]["answer_survival"]),
                "100% (source)",
                "100%",
            ],
        ]
        tokens = ", ".join(f"{k} {_n(v)}" for k, v in chat["text_tokens"].items())
        lim = f", first {chat['limited_to']} turns" if chat["limited_to"] else ""
        title = (
            f"{chat['name']}: {chat['turns']} turns{lim}, text tokens {tokens}; "
            f"{chat['questions']['in_source']} questions with the answer in the evidence turns; "
            f"{o['pages']} pages at the end"
        )
        out.append((title, _grid(head, rows, markdown)))

        mrows = []
        for name, r in chat["modes"].items():
            ids = r["identifiers"]
            mrows.append(
                [
                    name,
                    f"{r['canvas']}px/{r['font_px']}px",
                    _n(r["pages"]),
                    f"{r['pages_decoded']}"
                    + (f" ({r['timing']['pages_shared']} shared)" if r["timing"].get("pages_shared") else ""),
                    _x(r["compression"]),
                    _n(r["seen_tokens"]),
                    _x(r["savings"]),
                    _fid(r["fidelity"]),
                    _surv(r["answer_survival"]),
                    _pct(ids["share_ocr"]),
                    _s(r["timing"]["recall_s_per_page"]) if r["timing"]["recall_pages"] else "shared",
                ]
            )
        if mrows:
            mhead = [
                "fixed mode",
                "canvas/font",
                "pages",
                "decoded",
                "compression",
                "seen",
                "savings",
                f"fidelity [{dec}]",
                "answers survive",
                "ids exact (OCR)",
                "recall/page",
            ]
            out.append(
                (
                    f"{chat['name']}: each mode on its own (typeset at the mode, never aged)",
                    _grid(mhead, mrows, markdown),
                )
            )

        arows = [
            [a["bucket"], _n(a["pages"]), ", ".join(a["modes"]), _fid(a["fidelity"])] for a in o["by_age"]
        ]
        if arows:
            out.append(
                (
                    f"{chat['name']}: fidelity [{dec}] against age (budget run; age = turns added after the page)",
                    _grid(["turns since", "pages", "modes", f"fidelity [{dec}]"], arows, markdown),
                )
            )
        crows = [
            [doc["consumers"][k]["label"], _n(v["seen_tokens"]), _x(v["savings"])]
            for k, v in o["consumers"].items()
        ]
        out.append(
            (
                f"{chat['name']}: what the budget run costs each model (recent text + page images by its rule)",
                _grid(["consumer", "tokens seen", "savings"], crows, markdown),
            )
        )
        t = o["timing"]
        out.append(
            (
                f"{chat['name']}: time [{dec}]",
                _grid(
                    [
                        "compress total",
                        "compress mean/max",
                        "pages read",
                        "recall total",
                        "recall/page",
                        "decoder chars/s",
                    ],
                    [
                        [
                            _s(t["compress_s_total"]),
                            f"{_s(t['compress_s_mean'])}/{_s(t['compress_s_max'])}",
                            _n(t["recall_pages"]),
                            _s(t["recall_s_total"]),
                            _s(t["recall_s_per_page"]),
                            _n(t["decoder_chars_per_s"]),
                        ]
                    ],
                    markdown,
                ),
            )
        )
    for _, ov in scopes:
        o, b = ov["optimem"], ov["baselines"]
        rows = [
            [
                "full history",
                _n(b["full_history"]["seen_tokens"]),
                "1.00x",
                _surv(b["full_history"]["answer_survival"]),
                "-",
            ],
            [
                "sliding window",
                _n(b["sliding_window"]["seen_tokens"]),
                _x(b["sliding_window"]["savings"]),
                _surv(b["sliding_window"]["answer_survival"]),
                "-",
            ],
            [
                "optimem",
                _n(o["seen_tokens"]),
                _x(o["savings"]),
                _surv(o["answer_survival"]),
                _fid(o["fidelity"]),
            ],
            [
                "archive recall",
                _n(b["archive"]["seen_tokens"]),
                _x(b["archive"]["savings"]),
                _surv(b["archive"]["answer_survival"]),
                "-",
            ],
        ]
        out.append(
            (
                f"overall: {ov['chats']} chats, {_n(ov['turns'])} turns, {_n(ov['text_tokens'])} text tokens",
                _grid(
                    ["what the model sees", "tokens", "savings", "answers survive", f"fidelity [{dec}]"],
                    rows,
                    markdown,
                ),
            )
        )
        mrows = [
            [
                k,
                _n(v["pages"]),
                _x(v["compression"]),
                _x(v["savings"]),
                _fid(v["fidelity"]),
                _surv(v["answer_survival"]),
            ]
            for k, v in ov["modes"].items()
        ]
        if mrows:
            out.append(
                (
                    "overall: fixed modes",
                    _grid(
                        ["mode", "pages", "compression", "savings", f"fidelity [{dec}]", "answers survive"],
                        mrows,
                        markdown,
                    ),
                )
            )
    out += _strict_sections(doc, markdown)
    return out


def _share(c: dict[str, Any], n: int) -> str:
    return f"{c['survived']}/{n} {_pct(c['share'])}" if n else "n/a"


def _strict_sections(doc: dict[str, Any], markdown: bool) -> list[tuple[str, str]]:
    """One table of the strict runs: a row per chat and target, then the pooled rows."""
    dec = doc["decoder"].get("label", doc["decoder"]["name"])
    head = [
        "chat",
        "target",
        "savings (all pages / shown)",
        "pages in ctx",
        "exact (reachable)",
        "loose (reachable)",
        "exact (in context)",
        "sliding window",
        "ids exact",
        "lines exact",
        "side channel",
    ]
    rows = []
    scopes = [(c["name"], c["targets"]) for c in doc["chats"]]
    if len(doc["chats"]) > 1:
        scopes.append(("all", doc["overall"]["targets"]))
    for name, runs in scopes:
        for t in runs:
            sv, n = t["survival"], t["eligible"]
            ids = t["identifiers"]
            rows.append(
                [
                    name,
                    f"{t['target']:g}x",
                    f"{_x(t['savings'])} / {_x(t['savings_in_context'])}",
                    f"{t['pages_in_context']}/{t['pages']}",
                    _share(sv["exact"], n),
                    _share(sv["loose"], n),
                    _share(sv["exact_in_context"], n),
                    _share(sv["window"], n),
                    _pct(ids["share_with_verbatim"]),
                    _pct(t["lines"]["share"]),
                    _pct(t["side_channel"]["share"]),
                ]
            )
    if not rows:
        return []
    title = (
        f"strict runs [{dec}]: budget = text tokens ÷ target; exact = the answer's normalised words as one "
        "sequence in the recalled evidence; lines exact = lines whose recalled words pass their check; "
        "side channel = bytes kept beside the pages (strings, line checks, rare words) ÷ page text bytes"
    )
    return [(title, _grid(head, rows, markdown))]


def format_table(doc: dict[str, Any]) -> str:
    """The terminal report."""
    lines = []
    if doc["decoder"]["test_double"]:
        lines += [BANNER, ""]
    cfg = doc["config"]
    lines.append(
        f"optimem bench: decoder {doc['decoder']['name']}, "
        f"budget {cfg['budget_tokens']:,} tokens, text tokens {cfg['encoding']}"
    )
    for w in doc["warnings"]:
        lines.append(f"note: {w}")
    for title, table in _sections(doc, markdown=False):
        lines += ["", title, table]
    lines += [
        "",
        "tokens seen = recent turns as text + pages as DeepSeek-OCR positions and captions; savings = text tokens ÷ seen",
    ]
    if doc["decoder"]["test_double"]:
        lines += ["", BANNER]
    return "\n".join(lines)


def to_markdown(doc: dict[str, Any], plots: dict[str, str] | None = None) -> str:
    """A markdown report; `plots` maps plot keys to paths relative to the report."""
    dec = doc["decoder"]
    cfg = doc["config"]
    lines = ["# optimem benchmark", ""]
    if dec["test_double"]:
        lines += [f"> **{BANNER}**", ""]
    lines += [
        f"- decoder: **{dec['name']}** (`{dec['fingerprint']}`); every fidelity figure below is this decoder's",
        f"- policy: budget of {cfg['budget_tokens']:,} tokens (the sliding window gets the same budget)",
        f"- fixed modes: {', '.join(cfg['modes']) or 'none'}; pages decoded per mode and chat: "
        f"{cfg['pages_per_mode'] or 'all'}",
        f"- text tokens: {cfg['encoding']}"
        + (f" (and {cfg['extra_encoding']})" if cfg["extra_encoding"] else ""),
        f"- answers: found when the normalised answer matches the recalled text at ≥ {cfg['answer_threshold']:.0%}",
        f"- optimem {doc['optimem_version']}, {doc['created_at']}, {doc['seconds']} s",
        "",
    ]
    for w in doc["warnings"]:
        lines.append(f"> note: {w}")
    if doc["warnings"]:
        lines.append("")
    for title, table in _sections(doc, markdown=True):
        lines += [f"### {title}", "", table, ""]
    lines += ["### Image-token rules per consumer", ""]
    head = ["consumer", "rule", *(m.value for m in LADDER), "source"]
    rows = [
        [c["label"], c["rule"], *(str(c["page_tokens"][m.value]) for m in LADDER), c["source"]]
        for c in doc["consumers"].values()
    ]
    lines += [_grid(head, rows, markdown=True), ""]
    lines.append(
        "Text tokens of other providers' models are counted with o200k_base too (an approximation "
        "for non-OpenAI tokenizers); only the page-image cost follows each provider's rule."
    )
    lines.append("")
    captions = {
        "savings_fidelity": f"Fidelity against compression per mode (ours: decoder {dec['name']}; paper: DeepSeek-OCR on Fox)",
        "fidelity_age": f"Fidelity against page age in the budget run (decoder {dec['name']})",
        "tokens_seen": "Tokens the model sees over the conversation",
        "strict_survival": f"Exact answer survival against savings (decoder {dec['name']}; sliding window; paper: OCR precision on Fox)",
    }
    for key, path in (plots or {}).items():
        lines += [f"![{captions.get(key, key)}]({path})", ""]
    lines += [f"Paper points: {doc['paper_reference']['source']}.", ""]
    if dec["test_double"]:
        lines += [f"> **{BANNER}**", ""]
    return "\n".join(lines)
