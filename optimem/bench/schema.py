"""The JSON schema of a benchmark result (`optimem.bench/N`) and a small validator for it.

Documented in docs/bench.md and pinned by tests/bench/test_report.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .config import SCHEMA_ID


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
        "pages_shared": {
            **INT,
            "description": "pages given an earlier replay's read of the same image "
            "(a decoder that reads pixels, not modes); not in the recall or decoder figures",
        },
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
        "shared_from": {
            "type": ["string", "null"],
            "description": "the earlier replay of the chat whose read of "
            "the same image this page was given (see pages_shared); null: read here",
        },
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
        "positions": INT,
        "page_tokens": INT,
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
STRICT_COUNT = _obj({"survived": INT, "share": SHARE_N})
STRICT_SURVIVAL = _obj(
    {k: STRICT_COUNT for k in ("exact", "loose", "exact_in_context", "loose_in_context", "window")},
    desc="questions whose answer survives: exact (normalised words, one sequence) or loose (fuzzy >= 0.9), "
    "counting every page reachable by recall or only pages context(budget) shows; window: a sliding "
    "window of the same budget",
)
SIDE_CHANNEL = _obj(
    {
        "bytes": INT,
        "strings_bytes": INT,
        "aid_bytes": INT,
        "page_text_bytes": INT,
        "share": SHARE_N,
        "page_share_max": NUM_N,
        "pages_over_10pct": INT,
    },
    optional=("page_share_max", "pages_over_10pct"),
    desc="what is kept beside the pages (verbatim strings; reading aids: line checks and rare words), "
    "in bytes and as a share of the pages' text bytes",
)
LINES = _obj(
    {"checked": INT, "exact": INT, "share": SHARE_N},
    desc="lines with a word check, and those whose recalled words pass it",
)
_TARGET_COMMON = {
    "target": NUM,
    "text_tokens": INT,
    "seen_tokens": INT,
    "savings": NUM_N,
    "shown_tokens": INT,
    "savings_in_context": NUM_N,
    "pages": INT,
    "pages_shared": {**INT, "description": "pages given an earlier replay's read of the same image"},
    "pages_in_context": INT,
    "eligible": INT,
    "survival": STRICT_SURVIVAL,
    "side_channel": SIDE_CHANNEL,
    "lines": LINES,
}
TARGET_RUN = _obj(
    _TARGET_COMMON
    | {
        "budget_tokens": INT,
        "modes": _map(INT, "pages per final mode"),
        "identifiers": IDENTIFIERS,
        "fidelity": FIDELITY,
        "misses": _list(_obj({"answer": STR, "evidence": _list(STR), "loose": BOOL})),
    },
    desc="a strict run: budget = text tokens / target, every page read back",
)
TARGET_POOL = _obj(
    _TARGET_COMMON
    | {"identifiers": _obj({"total": INT, "exact_with_verbatim": INT, "share_with_verbatim": SHARE_N})},
    desc="the strict runs of one target pooled over chats",
)
WINDOW_POINT = _obj(
    {
        "target": INT,
        "budget_tokens": INT,
        "seen_tokens": INT,
        "survived": INT,
        "eligible": INT,
        "share": SHARE_N,
    },
    optional=("budget_tokens", "share"),
    desc="a sliding window of text / target tokens: questions whose evidence it still holds (exact answers)",
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
        "targets": _list(TARGET_RUN),
        "window_curve": _list(WINDOW_POINT),
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
        "targets": _list(TARGET_POOL),
        "window_curve": _list(WINDOW_POINT),
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
                {"name": STR, "label": STR, "fingerprint": STR, "test_double": BOOL},
                desc="the backend that read every page back (label: with '+proofread' when pages kept reading "
                "aids); test_double true means no figure is a measurement",
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
                    "target_savings": _list(NUM),
                    "reading_aids": {"type": "boolean"},
                    "read_ahead_processes": INT,
                },
                optional=("read_ahead_processes",),
                desc="read_ahead_processes: worker processes that read pages while the chats were replayed "
                "(0: the runner's own process read them); each page's seconds are its worker's",
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
