"""What each viewer page shows, as JSON-ready dicts built from the library's records (`to_dict()`), the same data `/v1` serves.

Every function here is blocking (it reads SQLite, maybe runs OCR): routes call them through
`asyncio.to_thread`. The HTML templates render these dicts and the `?format=json` twin of each
page returns them as they are, so the viewer never shows anything the JSON does not hold.
"""

from __future__ import annotations

import io
import re
import threading
from datetime import UTC, datetime
from typing import Any

from PIL import Image

from optimem import OpticalMemory, Page, Session
from optimem.backends import PageInput
from optimem.verbatim import repair

from ..deps import TenantSessions
from . import chart, diff

#: Turns still kept as text shown under the timeline (the newest ones).
RECENT_TURNS = 20
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
#: "Read again" runs the backend outside its decode queue: one such read at a time per process.
_read_lock = threading.Lock()


def public_id(session: Session) -> str:
    return session.id.split("/", 1)[1]


def session_summary(session: Session) -> dict[str, Any]:
    """One row of the sessions list: turns, pages by mode, text tokens against tokens seen, last activity."""
    stats = session.stats().to_dict()
    pages = session.pages()
    turns = session.turns()
    times = [_aware(t.created_at) for t in turns if t.created_at]
    times += [_aware(p.aged_at or p.created_at) for p in pages]
    return {
        "session": public_id(session),
        "turns": stats["turns"],
        "pages": len(pages),
        "pages_by_mode": {m: s["pages"] for m, s in stats["per_mode"].items() if s["pages"]},
        "text_tokens": stats["text_tokens"],
        "tokens_seen": stats["context_tokens"],
        "savings": stats["savings"],
        "last_activity": max(times).isoformat() if times else None,
    }


def _aware(moment: datetime) -> datetime:
    """A time comparable with the others (a caller may have stored a naive one: taken as UTC)."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def sessions_list(sessions: TenantSessions) -> dict[str, Any]:
    rows = [session_summary(sessions.session(name)) for name in sessions.names()]
    rows.sort(key=lambda r: r["last_activity"] or "", reverse=True)
    return {"tenant": sessions.tenant.name, "sessions": rows}


#: Decoder confidences already looked up, by (session, page, mode, characters, backend): a page's
#: cached read does not change until the page changes, so a timeline reads each one once.
_CONFIDENCE: dict[tuple[str, int, str, int, str], float] = {}
_CONFIDENCE_MAX = 100_000


def _confidences(session: Session, pages: list[Page]) -> dict[int, float]:
    """Decoder confidence of pages already read, from the decoded-text cache.

    Skipped while decodes are queued or decoding is lazy; newest first, it stops at the first
    page that was not decoded yet, so one timeline load runs OCR on one page at most.
    """
    memory = session.memory
    backend = memory.backend.name
    out: dict[int, float] = {}
    todo = []
    for page in pages:
        key = (session.id, page.id, page.mode.value, page.chars, backend)
        if key in _CONFIDENCE:
            out[page.id] = _CONFIDENCE[key]
        else:
            todo.append((key, page.id))
    if not todo or memory.decode_when == "lazy" or memory.pending_decodes():
        return out
    if len(_CONFIDENCE) + len(todo) > _CONFIDENCE_MAX:
        _CONFIDENCE.clear()
    for key, pid in reversed(todo):
        recall = session.recall_page(pid)
        out[pid] = _CONFIDENCE[key] = recall.confidence
        if not recall.cached:
            break
    return out


def timeline(session: Session, memory: OpticalMemory) -> dict[str, Any]:
    """A session's pages in conversation order, its stats, the chart and the recent text turns."""
    stats = session.stats()
    pages = session.pages()
    turns = session.turns()
    seq = {t.id: t.seq for t in turns}
    conf = _confidences(session, pages)
    rows = []
    for page in pages:
        first, last = min(page.turn_ids), max(page.turn_ids)
        rows.append(
            page.to_dict()
            | {
                "first_turn": seq.get(first, first),
                "last_turn": seq.get(last, last),
                "confidence": conf.get(page.id),
                "version": f"{page.mode.value}-{page.chars}-{page.canvas}",
            }
        )
    recent = [t.to_dict() for t in turns if not t.paged][-RECENT_TURNS:]
    data = chart.series(turns, pages)
    budget = getattr(memory.policy, "budget", None)
    return {
        "session": public_id(session),
        "backend": memory.backend.name,
        "stats": stats.to_dict(),
        "pages": rows,
        "unpaged_turns": sum(not t.paged for t in turns),
        "recent_turns": recent,
        "chart": data | {"budget": budget},
    }


def page_view(session: Session, page_id: int) -> dict[str, Any]:
    """One page: its record, the recalled text with repairs marked, the source diff and fidelity."""
    page = session.page(page_id)
    recall = session.recall_page(page_id)
    source = session.page_source(page_id)
    pages = session.pages()
    ids = [p.id for p in pages]
    at = ids.index(page_id)
    return {
        "session": public_id(session),
        "page": page.to_dict(),
        "recall": recall.to_dict(),
        "repairs": diff.repairs(recall.raw_text, recall.text),
        "source": source,
        "source_diff": None if source is None else diff.source_diff(recall.text, source),
        "fidelity": diff.measured(recall.text, recall.raw_text, source),
        "previous": ids[at - 1] if at > 0 else None,
        "next": ids[at + 1] if at + 1 < len(ids) else None,
    }


def read_again(session: Session, memory: OpticalMemory, page_id: int) -> dict[str, Any]:
    """Run the backend on the stored page image now, from the pixels alone (no layout, no cache),
    and measure it like the cached read. One read at a time per process."""
    page = session.page(page_id)
    png = session.page_png(page_id)
    recall = session.recall_page(page_id)
    source = session.page_source(page_id)
    image = Image.open(io.BytesIO(png))
    image.load()
    scale = page.canvas / page.creation_mode.canvas
    sample = source if source is not None else recall.text
    page_input = PageInput(
        image=image, mode=page.mode, font_px=page.font_px * scale, has_cjk=bool(_CJK.search(sample))
    )
    with _read_lock:
        decoded = memory.backend.decode(page_input)
    text = repair(decoded.text, recall.verbatim)
    return {
        "session": public_id(session),
        "page_id": page_id,
        "mode": page.mode.value,
        "backend": decoded.backend,
        "text": text,
        "raw_text": decoded.text,
        "confidence": round(float(decoded.confidence), 4),
        "seconds": round(float(decoded.seconds), 3),
        "fidelity": diff.measured(text, decoded.text, source),
        "cached_fidelity": diff.measured(recall.text, recall.raw_text, source),
        "source_diff": None if source is None else diff.source_diff(text, source),
    }


def search(session: Session, query: str, limit: int) -> dict[str, Any]:
    hits = session.search(query, limit=limit)
    return {"session": public_id(session), "query": query} | hits.to_dict()
