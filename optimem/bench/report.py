"""Present a benchmark result: a table for the terminal, JSON, markdown and PNG plots.

Everything here reads the dict `optimem.bench.runner.run` returns and nothing else; the
JSON schema of that dict is `SCHEMA` (JSON Schema, draft 2020-12 subset), documented in
docs/bench.md and pinned by tests/bench/test_report.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..modes import LADDER, Mode
from .runner import SCHEMA_ID

BANNER = "!! TEST DOUBLE: NOT A MEASUREMENT (the backend reads the layout, not pixels) !!"
PLOTS = {
    "savings_fidelity": "savings_fidelity.png",
    "fidelity_age": "fidelity_age.png",
    "tokens_seen": "tokens_seen.png",
}

# ---------------------------------------------------------------------------------------------
# Schema


def _obj(props: dict[str, Any], *, optional: Sequence[str] = (), desc: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "object",
        "properties": props,
        "required": [k for k in props if k not in optional],
        "additionalProperties": False,
    }
    if desc:
        out["description"] = desc
    return out


def _map(values: dict[str, Any], desc: str) -> dict[str, Any]:
    return {"type": "object", "description": desc, "additionalProperties": values}


def _list(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


INT = {"type": "integer", "minimum": 0}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
INT_N = {"type": ["integer", "null"]}
NUM_N = {"type": ["number", "null"]}
SHARE_N = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
BOOL_N = {"type": ["boolean", "null"]}
SERIES = {**_list(INT), "description": "tokens the model sees after each turn"}

FIDELITY = _obj(
    {
        "mean": SHARE_N,
        "min": SHARE_N,
        "mean_with_verbatim": SHARE_N,
        "pages": INT,
        "decoder": STR,
    },
    desc="1 - Levenshtein/len on whitespace-normalised characters, of the decoder's own output "
    "(mean_with_verbatim: after the verbatim side channel repaired identifiers); null when no "
    "page was decoded. Always names its decoder.",
)
SURVIVAL = _obj(
    {"eligible": INT, "survived": INT, "share": SHARE_N, "not_measured": INT},
    desc="answerable questions whose answer text is in their evidence turns (eligible), and how "
    "many of those are found (normalised, fuzzy >= 0.9) in what the agent gets back for those turns",
)
IDS_KIND = _obj({"total": INT, "exact_ocr": INT, "exact_with_verbatim": INT})
IDENTIFIERS = _obj(
    {
        "total": INT,
        "exact_ocr": INT,
        "exact_with_verbatim": INT,
        "share_ocr": SHARE_N,
        "share_with_verbatim": SHARE_N,
        "by_kind": _map(IDS_KIND, "per verbatim kind: url, email, uuid, code, hex, identifier, number"),
    },
    desc="verbatim strings (identifiers, numbers, URLs) of decoded pages found exactly",
)
TIMING = _obj(
    {
        "compress_s_total": NUM_N,
        "compress_s_mean": NUM_N,
        "compress_s_max": NUM_N,
        "recall_pages": INT,
        "recall_s_total": NUM_N,
        "recall_s_per_page": NUM_N,
        "decoder_s_total": NUM_N,
        "decoder_chars_per_s": NUM_N,
    },
    desc="wall-clock seconds: compress() per turn, recall_page() per page; decoder time as the backend reports it",
)
SEEN = _obj({"seen_tokens": INT, "savings": NUM_N})
CONSUMER_SEEN = _map(SEEN, "per consumer (see top-level consumers): recent text + page images at its rule")
PAGE_ROW = _obj(
    {
        "page_id": INT,
        "mode": STR,
        "creation_mode": STR,
        "turns_since": INT,
        "age_bucket": STR,
        "turn_ids": _list(INT),
        "text_tokens": INT,
        "positions": INT,
        "compression": NUM_N,
        "chars": INT,
        "font_px": INT,
        "canvas": INT,
        "fidelity": SHARE_N,
        "fidelity_with_verbatim": SHARE_N,
        "identifiers": INT,
        "identifiers_exact_ocr": INT,
        "decoder_s": NUM_N,
        "recall_scope": {"enum": ["turn", "page"]},
    },
    desc="one decoded page; fidelity by the document's decoder",
)
MODE_RUN = _obj(
    {
        "pages": INT,
        "pages_decoded": INT,
        "font_px": INT_N,
        "canvas": INT,
        "positions_per_page": INT,
        "text_tokens": INT,
        "positions": INT,
        "compression": NUM_N,
        "seen_tokens": INT,
        "savings": NUM_N,
        "consumers": CONSUMER_SEEN,
        "fidelity": FIDELITY,
        "identifiers": IDENTIFIERS,
        "timing": TIMING,
        "series": SERIES,
        "page_rows": _list(PAGE_ROW),
        "answer_survival": SURVIVAL,
    },
    desc="pages typeset at this mode and never aged (NoAging); a sample of pages decoded",
)
BY_MODE = _obj(
    {"pages": INT, "text_tokens": INT, "positions": INT, "compression": NUM_N, "fidelity": FIDELITY}
)
BY_AGE = _obj({"bucket": STR, "pages": INT, "modes": _list(STR), "fidelity": FIDELITY})
OPTIMEM_RUN = _obj(
    {
        "policy": STR,
        "creation_mode": STR,
        "pages": INT,
        "unpaged_tokens": INT,
        "page_tokens": INT,
        "positions": INT,
        "seen_tokens": INT,
        "savings": NUM_N,
        "savings_by_encoding": _map(NUM_N, "savings with text counted in another encoding"),
        "over_budget": BOOL,
        "compression": NUM_N,
        "consumers": CONSUMER_SEEN,
        "fidelity": FIDELITY,
        "by_mode": _map(BY_MODE, "pages by the mode they were aged to at the end"),
        "by_age": _list(BY_AGE),
        "answer_survival": SURVIVAL,
        "identifiers": IDENTIFIERS,
        "timing": TIMING,
        "series": SERIES,
        "page_rows": _list(PAGE_ROW),
    },
    desc="the default policy (BudgetPolicy) replayed turn by turn; every final page decoded once",
)
BASELINES = _obj(
    {
        "full_history": _obj(
            {"seen_tokens": INT, "savings": NUM, "answer_survival": SURVIVAL, "series": SERIES}
        ),
        "sliding_window": _obj(
            {
                "budget_tokens": INT,
                "seen_tokens": INT,
                "savings": NUM_N,
                "turns_kept": INT,
                "turns_dropped": INT,
                "answer_survival": SURVIVAL,
                "series": SERIES,
            }
        ),
        "archive": _obj(
            {"seen_tokens": INT, "savings": NUM_N, "answer_survival": SURVIVAL, "series": SERIES, "note": STR}
        ),
    }
)
ANSWER = _obj(
    {
        "question": STR,
        "answer": STR,
        "category": STR,
        "evidence": _list(STR),
        "in_source": BOOL,
        "optimem": BOOL_N,
        "sliding_window": BOOL,
        "full_history": BOOL,
        "archive": BOOL,
        "modes": _map(BOOL_N, "null: an evidence page was not among the decoded sample"),
    },
    optional=("optimem", "sliding_window", "full_history", "archive", "modes"),
    desc="one answerable question; outcomes only when in_source",
)
CHAT = _obj(
    {
        "name": STR,
        "source": STR,
        "format": {"enum": ["locomo", "plain", "optimem"]},
        "turns": INT,
        "skipped_turns": INT,
        "limited_to": INT_N,
        "text_tokens": _map(INT, "text tokens of every turn, by tiktoken encoding (o200k_base always)"),
        "questions": _obj({"total": INT, "answerable": INT, "in_source": INT}),
        "optimem": OPTIMEM_RUN,
        "baselines": BASELINES,
        "modes": _map(MODE_RUN, "fixed-mode runs by mode name"),
        "answers": _list(ANSWER),
    }
)
OVERALL_SURVIVAL_ONLY = _obj({"seen_tokens": INT, "savings": NUM_N, "answer_survival": SURVIVAL})
OVERALL = _obj(
    {
        "chats": INT,
        "turns": INT,
        "text_tokens": INT,
        "optimem": _obj(
            {
                "pages": INT,
                "seen_tokens": INT,
                "savings": NUM_N,
                "consumers": CONSUMER_SEEN,
                "fidelity": FIDELITY,
                "by_mode": _map(_obj({"pages": INT, "fidelity": FIDELITY}), "pages by final mode"),
                "by_age": _list(_obj({"bucket": STR, "pages": INT, "fidelity": FIDELITY})),
                "answer_survival": SURVIVAL,
                "identifiers": _obj(
                    {
                        "total": INT,
                        "exact_ocr": INT,
                        "exact_with_verbatim": INT,
                        "share_ocr": SHARE_N,
                        "share_with_verbatim": SHARE_N,
                    }
                ),
                "compress_s_total": NUM_N,
                "recall_s_total": NUM_N,
            }
        ),
        "baselines": _obj(
            {
                "full_history": OVERALL_SURVIVAL_ONLY,
                "sliding_window": OVERALL_SURVIVAL_ONLY,
                "archive": OVERALL_SURVIVAL_ONLY,
            }
        ),
        "modes": _map(
            _obj(
                {
                    "pages": INT,
                    "pages_decoded": INT,
                    "text_tokens": INT,
                    "positions": INT,
                    "compression": NUM_N,
                    "seen_tokens": INT,
                    "savings": NUM_N,
                    "fidelity": FIDELITY,
                    "answer_survival": SURVIVAL,
                }
            ),
            "fixed-mode runs pooled over chats",
        ),
    },
    desc="every chat pooled: token sums, pooled questions, mean fidelity over all decoded pages",
)
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": SCHEMA_ID,
    "title": "optimem bench result",
    **_obj(
        {
            "schema": {"const": SCHEMA_ID},
            "optimem_version": STR,
            "created_at": STR,
            "decoder": _obj(
                {"name": STR, "fingerprint": STR, "test_double": BOOL},
                desc="the backend that read every page back; test_double true means no figure is a measurement",
            ),
            "warnings": _list(STR),
            "config": _obj(
                {
                    "budget_tokens": INT,
                    "modes": _list(STR),
                    "pages_per_mode": INT,
                    "limit_turns": INT_N,
                    "keep_recent_turns": INT,
                    "creation_mode": STR,
                    "encoding": STR,
                    "extra_encoding": {"type": ["string", "null"]},
                    "answer_threshold": NUM,
                }
            ),
            "consumers": _map(
                _obj(
                    {
                        "label": STR,
                        "rule": STR,
                        "source": STR,
                        "page_tokens": _map(INT, "tokens per page by mode"),
                    }
                ),
                "image-token rules of the models that read the context",
            ),
            "chats": _list(CHAT),
            "overall": OVERALL,
            "paper_reference": _obj(
                {
                    "source": STR,
                    "points": _list(
                        _obj({"mode": STR, "precision": NUM, "compression": NUM, "text_tokens": STR})
                    ),
                }
            ),
            "seconds": NUM_N,
        }
    ),
}


def validate(doc: Any, schema: dict[str, Any] = SCHEMA, path: str = "$") -> list[str]:
    """Problems of `doc` against `schema` (the subset of JSON Schema SCHEMA uses); [] if valid."""
    errors: list[str] = []
    if "const" in schema and doc != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {doc!r}")
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{path}: {doc!r} not one of {schema['enum']}")
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        checks = {
            "object": lambda v: isinstance(v, dict),
            "array": lambda v: isinstance(v, list),
            "string": lambda v: isinstance(v, str),
            "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
            "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "boolean": lambda v: isinstance(v, bool),
            "null": lambda v: v is None,
        }
        if not any(checks[n](doc) for n in names):
            return [f"{path}: expected {'/'.join(names)}, got {type(doc).__name__}"]
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        if "minimum" in schema and doc < schema["minimum"]:
            errors.append(f"{path}: {doc} < minimum {schema['minimum']}")
        if "maximum" in schema and doc > schema["maximum"]:
            errors.append(f"{path}: {doc} > maximum {schema['maximum']}")
    if isinstance(doc, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in doc:
                errors.append(f"{path}: missing {key!r}")
        extra = schema.get("additionalProperties", True)
        for key, value in doc.items():
            if key in props:
                errors += validate(value, props[key], f"{path}.{key}")
            elif extra is False:
                errors.append(f"{path}: unexpected key {key!r} (not in the schema)")
            elif isinstance(extra, dict):
                errors += validate(value, extra, f"{path}.{key}")
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            errors += validate(item, schema["items"], f"{path}[{i}]")
    return errors


def schema_json() -> str:
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Text


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
    dec = doc["decoder"]["name"]
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
                    f"{r['pages_decoded']}",
                    _x(r["compression"]),
                    _n(r["seen_tokens"]),
                    _x(r["savings"]),
                    _fid(r["fidelity"]),
                    _surv(r["answer_survival"]),
                    _pct(ids["share_ocr"]),
                    _s(r["timing"]["recall_s_per_page"]),
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
    return out


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
        "tokens seen = recent turns as text + pages as DeepSeek-OCR positions; savings = text tokens ÷ seen",
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
    }
    for key, path in (plots or {}).items():
        lines += [f"![{captions.get(key, key)}]({path})", ""]
    lines += [f"Paper points: {doc['paper_reference']['source']}.", ""]
    if dec["test_double"]:
        lines += [f"> **{BANNER}**", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Plots

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
    dec = doc["decoder"]["name"]
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
    dec = doc["decoder"]["name"]
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


def write_plots(doc: dict[str, Any], folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "savings_fidelity": plot_savings_fidelity(doc, folder / PLOTS["savings_fidelity"]),
        "fidelity_age": plot_fidelity_age(doc, folder / PLOTS["fidelity_age"]),
        "tokens_seen": plot_tokens_seen(doc, folder / PLOTS["tokens_seen"]),
    }


def write_all(doc: dict[str, Any], folder: Path, *, plots: bool = True) -> dict[str, Path]:
    """bench.json, bench.md and the plots into `folder`; returns what was written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if plots:
        written.update(write_plots(doc, folder))
    json_path = folder / "bench.json"
    json_path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    written["json"] = json_path
    md_path = folder / "bench.md"
    rel = {k: v.name for k, v in written.items() if k in PLOTS}
    md_path.write_text(to_markdown(doc, rel), encoding="utf-8")
    written["markdown"] = md_path
    return written
