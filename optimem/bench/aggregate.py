"""Pool the per-chat results of a benchmark run into its `overall` section."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ..modes import Mode
from ..tokens import DEFAULT_ENCODING
from . import metrics as m
from . import strict
from .config import BenchConfig
from .score import r as rnd


def overall(chats: Sequence[dict[str, Any]], cfg: BenchConfig, decoder: str) -> dict[str, Any]:
    """Every chat pooled: token sums, pooled survival counts, page rows across chats."""
    text = sum(c["text_tokens"][DEFAULT_ENCODING] for c in chats)

    def pooled(get) -> dict[str, Any]:
        e = sum(get(c)["eligible"] for c in chats)
        s = sum(get(c)["survived"] for c in chats)
        n = sum(get(c)["not_measured"] for c in chats)
        return {"eligible": e, "survived": s, "share": rnd(m.share(s, e)), "not_measured": n}

    def fid(rows: list[dict[str, Any]]) -> dict[str, Any]:
        vals = [r["fidelity"] for r in rows]
        return {
            "mean": rnd(m.mean(vals)),
            "min": rnd(min(vals) if vals else None),
            "mean_with_verbatim": rnd(m.mean(r["fidelity_with_verbatim"] for r in rows)),
            "pages": len(vals),
            "decoder": decoder,
        }

    rows = [r for c in chats for r in c["optimem"]["page_rows"]]
    seen = sum(c["optimem"]["seen_tokens"] for c in chats)
    window = sum(c["baselines"]["sliding_window"]["seen_tokens"] for c in chats)
    ids_total = sum(c["optimem"]["identifiers"]["total"] for c in chats)
    ids_raw = sum(c["optimem"]["identifiers"]["exact_ocr"] for c in chats)
    ids_fix = sum(c["optimem"]["identifiers"]["exact_with_verbatim"] for c in chats)
    modes = {}
    for mode in cfg.modes:
        ms = [c["modes"][mode.value] for c in chats]
        tt = sum(x["text_tokens"] for x in ms)
        pos = sum(x["positions"] for x in ms)
        mseen = sum(x["seen_tokens"] for x in ms)
        modes[mode.value] = {
            "pages": sum(x["pages"] for x in ms),
            "pages_decoded": sum(x["pages_decoded"] for x in ms),
            "text_tokens": tt,
            "positions": pos,
            "compression": rnd(m.compression(tt, pos)),
            "seen_tokens": mseen,
            "savings": rnd(m.savings(text, mseen)),
            "fidelity": fid([r for x in ms for r in x["page_rows"]]),
            "answer_survival": pooled(lambda c, k=mode.value: c["modes"][k]["answer_survival"]),
        }
    by_age = defaultdict(list)
    for r in rows:
        by_age[r["age_bucket"]].append(r)
    by_final_mode = defaultdict(list)
    for r in rows:
        by_final_mode[r["mode"]].append(r)
    consumers = {}
    for name in cfg.consumers:
        cseen = sum(c["optimem"]["consumers"][name]["seen_tokens"] for c in chats)
        consumers[name] = {"seen_tokens": cseen, "savings": rnd(m.savings(text, cseen))}
    return {
        "chats": len(chats),
        "turns": sum(c["turns"] for c in chats),
        "text_tokens": text,
        "optimem": {
            "pages": sum(c["optimem"]["pages"] for c in chats),
            "seen_tokens": seen,
            "savings": rnd(m.savings(text, seen)),
            "consumers": consumers,
            "fidelity": fid(rows),
            "by_mode": {
                k: {"pages": len(v), "fidelity": fid(v)}
                for k, v in sorted(by_final_mode.items(), key=lambda kv: Mode(kv[0]).rank)
            },
            "by_age": [
                {"bucket": k, "pages": len(v), "fidelity": fid(v)}
                for k, v in sorted(by_age.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))
            ],
            "answer_survival": pooled(lambda c: c["optimem"]["answer_survival"]),
            "identifiers": {
                "total": ids_total,
                "exact_ocr": ids_raw,
                "exact_with_verbatim": ids_fix,
                "share_ocr": rnd(m.share(ids_raw, ids_total)),
                "share_with_verbatim": rnd(m.share(ids_fix, ids_total)),
            },
            "compress_s_total": rnd(sum(c["optimem"]["timing"]["compress_s_total"] for c in chats)),
            "recall_s_total": rnd(sum(c["optimem"]["timing"]["recall_s_total"] for c in chats)),
        },
        "baselines": {
            "full_history": {
                "seen_tokens": text,
                "savings": 1.0,
                "answer_survival": pooled(lambda c: c["baselines"]["full_history"]["answer_survival"]),
            },
            "sliding_window": {
                "seen_tokens": window,
                "savings": rnd(m.savings(text, window)),
                "answer_survival": pooled(lambda c: c["baselines"]["sliding_window"]["answer_survival"]),
            },
            "archive": {
                "seen_tokens": seen,
                "savings": rnd(m.savings(text, seen)),
                "answer_survival": pooled(lambda c: c["baselines"]["archive"]["answer_survival"]),
            },
        },
        "modes": modes,
        "targets": [strict.pool([c["targets"][i] for c in chats]) for i in range(len(cfg.target_savings))],
        "window_curve": strict.pool_window([c["window_curve"] for c in chats]),
    }
