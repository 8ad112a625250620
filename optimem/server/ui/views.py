"""What each viewer page shows, as JSON-ready dicts built from the library's records (`to_dict()`), the same data `/v1` serves.

Every function here is blocking (it reads SQLite, maybe runs OCR): routes call them through
`asyncio.to_thread`. The HTML templates render these dicts and the `?format=json` twin of each
page returns them as they are, so the viewer never shows anything the JSON does not hold.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from optimem import OpticalMemory, Page, Session

from ..deps import TenantSession, TenantSessions
from . import chart, diff

#: Turns still kept as text shown under the timeline (the newest ones).
RECENT_TURNS = 20


def public_id(session: Session) -> str:
    return session.public_id if isinstance(session, TenantSession) else session.id


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
    """Decoder confidence of the pages already read (never runs OCR: pages not decoded yet
    have none to show)."""
    backend = session.memory.backend.name
    if len(_CONFIDENCE) + len(pages) > _CONFIDENCE_MAX:
        _CONFIDENCE.clear()
    out: dict[int, float] = {}
    for page in pages:
        key = (session.id, page.id, page.mode.value, page.chars, backend)
        if key not in _CONFIDENCE:
            recall = session.cached_recall(page.id)
            if recall is None:
                continue
            _CONFIDENCE[key] = recall.confidence
        out[page.id] = _CONFIDENCE[key]
    return out


def timeline(session: Session, memory: OpticalMemory) -> dict[str, Any]:
    """A session's pages in conversation order, its stats, the chart and the recent text turns."""
    stats = session.stats()
    pages = session.pages()
    turns = session.turns()
    conf = _confidences(session, pages)
    rows = []
    for page in pages:
        first, last = page.turn_numbers  # numbers in the session, as the page's number is
        rows.append(
            page.to_dict()
            | {
                "first_turn": first,
                "last_turn": last,
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
    previous, following = (pages[at - 1] if at > 0 else None), (pages[at + 1] if at + 1 < len(ids) else None)
    return {
        "session": public_id(session),
        "page": page.to_dict(),
        "recall": recall.to_dict(),
        "repairs": diff.repairs(recall.raw_text, recall.text),
        "source": source,
        "source_diff": None if source is None else diff.source_diff(recall.text, source),
        "fidelity": diff.measured(recall.text, recall.raw_text, source),
        "previous": previous and previous.id,
        "previous_number": previous and previous.number,
        "next": following and following.id,
        "next_number": following and following.number,
    }


def read_again(session: Session, page_id: int) -> dict[str, Any]:
    """Run OCR on the page again (it replaces the cached read) and measure it beside the read
    it replaces."""
    before = session.recall_page(page_id)
    source = session.page_source(page_id)
    fresh = session.recall_page(page_id, refresh=True)
    return {
        "session": public_id(session),
        "page_id": page_id,
        "mode": fresh.mode.value,
        "backend": fresh.backend,
        "text": fresh.text,
        "raw_text": fresh.raw_text,
        "confidence": round(fresh.confidence, 4),
        "seconds": round(fresh.seconds, 3),
        "fidelity": diff.measured(fresh.text, fresh.raw_text, source),
        "cached_fidelity": diff.measured(before.text, before.raw_text, source),
        "source_diff": None if source is None else diff.source_diff(fresh.text, source),
    }


def search(session: Session, query: str, limit: int) -> dict[str, Any]:
    hits = session.search(query, limit=limit).to_dict()
    numbers = {p.id: p.number for p in session.pages()}
    for hit in hits["hits"]:
        hit["number"] = numbers.get(hit["page_id"])
    return {"session": public_id(session), "query": query} | hits
