"""Reading memory back: one page's recalled text (side channel restored) and search over pages.

Search reads the decoded-text index, never the source archive (it keeps working after the
archive is dropped) and never runs OCR on the query path: pages not decoded yet are queued
for background decoding and counted as `unsearched`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from ..aids import linecheck
from ..errors import BackendError, InputError, TurnNotFound
from ..layout import LineBox, PageAids, VerbatimItem, turn_texts
from ..pages.verbatim import repair
from ..records import Hits, Page, Recall, RecalledTurn, RecallHit
from ..store import DecodedRecord, Store
from .correction import with_label
from .decoding import Decoder

#: Hits below this mean partial-ratio score are not matches.
MIN_SCORE = 0.6
#: With more indexed pages than this, the trigram index picks the candidates to score.
SCAN_ALL_BELOW = 200


def recall_page(
    store: Store,
    decoder: Decoder,
    session_id: str,
    page_id: int,
    *,
    refresh: bool = False,
    cached_only: bool = False,
) -> Recall | None:
    """Read one page back with everything known about how it was read.

    `refresh` runs OCR again (replacing the cached text); `cached_only` returns None instead
    of decoding a page that was not read yet.
    """
    read = _recall_with_layout(store, decoder, session_id, page_id, refresh=refresh, cached_only=cached_only)
    return None if read is None else read[0]


def _recall_with_layout(
    store: Store, decoder: Decoder, session_id: str, page_id: int, *, refresh: bool, cached_only: bool
) -> tuple[Recall, list[LineBox]] | None:
    """`recall_page`, and the page's layout it read to split the text into lines and turns
    (empty when the decoder did not read line by line)."""
    page = store.page(session_id, page_id)
    record = None if refresh else decoder.cached(page)
    cached = record is not None
    if record is None:
        if cached_only:
            return None
        record = decoder.decode([page.id], refresh=refresh).get(page.id)
        if record is None:
            raise BackendError(f"page {page_id} could not be decoded by {decoder.backend.name}")
    items = store.verbatim(page.id)
    aids = store.reading_aids(page.id)
    checks = linecheck.unpack(aids.checks) if aids is not None else []
    layout = store.page_blobs(page.id).layout if record.lines is not None else []
    turns: dict[int, str] = {}
    turns_verified: dict[int, bool | None] = {}
    verified: tuple[bool | None, ...]
    if record.lines is not None and checks and len(checks) == len(record.lines) == len(layout):
        lines, verified = repair_checked(record.lines, checks, layout, items, known=_known(record))
        text = "\n".join(lines)
        turns = turn_texts(list(zip(layout, lines, strict=True)))
        for box, ok in zip(layout, verified, strict=True):
            turns_verified[box.turn_id] = turns_verified.get(box.turn_id, True) and ok
    else:  # no checks to hold a repair to: near misses of kept strings are put back as before
        text = repair(record.text, items)
        lines = tuple(text.split("\n"))
        verified = (None,) * len(lines)
        if record.lines is not None and len(layout) == len(record.lines):
            turns = turn_texts(list(zip(layout, record.lines, strict=True)))
            turns = {tid: repair(t, [v for v in items if v.turn_id == tid]) for tid, t in turns.items()}
            turns_verified = dict.fromkeys(turns)
    return Recall(
        page_id=page.id,
        text=text,
        raw_text=record.text,
        mode=page.mode,
        backend=record.backend,
        confidence=record.confidence,
        cached=cached,
        seconds=record.seconds,
        turns=turns,
        verbatim=items,
        note=decoder.take_note(page.id),
        lines_checked=len(checks) if any(v is not None for v in verified) else 0,
        lines_exact=sum(v is True for v in verified),
        side_channel_bytes=sum(len(v.value.encode()) for v in items) + _aid_bytes(aids),
        lines=lines,
        verified=verified,
        turns_verified=turns_verified,
    ), layout


def _known(record: DecodedRecord) -> bool | None:
    """Whether every line (True) or none (False) passed its check when the page was read,
    from the count kept with the text; None when some did and some did not, or unknown."""
    if record.verified is None or record.lines is None:
        return None
    if record.verified == len(record.lines):
        return True
    return False if record.verified == 0 else None


def _aid_bytes(aids: PageAids | None) -> int:
    """What a page's reading aids take beside its image (checks and rare words)."""
    return 0 if aids is None else len(aids.checks) + len(" ".join(aids.lexicon).encode())


def repair_checked(
    lines: Sequence[str],
    checks: Sequence[bytes],
    layout: Sequence[LineBox],
    items: Sequence[VerbatimItem],
    *,
    known: bool | None = None,
) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """Each line with the kept strings typeset on it put back, where that makes (or keeps) the
    line passing its check, and whether it passes.

    A repair the check does not confirm never puts in a string that has a near duplicate among
    the page's kept strings: near-duplicate identifiers (`pay-10` and `pay-11`, `FL-304` and
    `FL-204`) are as close to each other as to their misreads, so such a repair could put the
    wrong one in, and the line keeps what was read. A string with no near duplicate is put back
    where OCR came close, and the line stays marked unverified either way.

    `known` says every line passed (True) or none did (False) when the page was read (the
    count kept with its text): a line with no kept string on it is then not checked again.
    """
    values = {v.value for v in items}
    crowded = {v for v in values if any(o != v and _near_duplicates(o, v) for o in values)}
    out, ok = [], []
    for line, check, box in zip(lines, checks, layout, strict=True):
        mine = [v for v in items if v.turn_id == box.turn_id and box.start <= v.offset < box.end]
        if not mine and known is not None:
            out.append(line)
            ok.append(known)
            continue
        passes = linecheck.verified(line, check)
        fixed = repair(line, mine) if mine else line
        if fixed != line and linecheck.verified(fixed, check):
            line, passes = fixed, True
        elif fixed != line and not any(v.value in crowded for v in mine):
            line = fixed  # nothing it could be confused with; still unverified
        if passes:
            line = _restore_same_words(line, mine, check)
        out.append(line)
        ok.append(passes)
    return tuple(out), tuple(ok)


def _near_duplicates(a: str, b: str) -> bool:
    """Two kept strings OCR could take for each other: two edits or fewer apart, case aside."""
    return Levenshtein.distance(a.casefold(), b.casefold(), score_cutoff=2) <= 2


def query_terms(query: str) -> list[str]:
    if not isinstance(query, str) or not query.strip():
        raise InputError("query must be a non-empty string")
    terms = [t for t in unicodedata.normalize("NFKC", query).lower().split() if len(t) > 1]
    return terms or [query.lower().strip()]


def search(
    store: Store, decoder: Decoder, pages: Sequence[Page], session_id: str, query: str, limit: int
) -> Hits:
    """Rank pages by how well their decoded text and verbatim strings match `query`."""
    terms = query_terms(query)
    if not isinstance(limit, int) or limit <= 0:
        raise InputError("limit must be a positive integer")
    indexed = store.indexed_text([p.id for p in pages])
    missing = [p.id for p in pages if p.id not in indexed]
    if missing:
        decoder.schedule(missing, force_background=True)
    candidates = list(indexed)
    if len(candidates) > SCAN_ALL_BELOW:
        candidates = store.search_candidates(session_id, terms, limit=max(50, 5 * limit))
    by_id = {p.id: p for p in pages}
    hits = []
    for pid in candidates:
        haystack = indexed[pid].lower()
        score = sum(fuzz.partial_ratio(term, haystack) / 100 for term in terms) / len(terms)
        if score >= MIN_SCORE:
            page = by_id[pid]
            hits.append(
                RecallHit(pid, round(score, 4), snippet(indexed[pid], terms), page.mode, page.turn_ids)
            )
    hits.sort(key=lambda h: (-h.score, -h.page_id))
    return Hits(hits[:limit], unsearched=len(missing))


def snippet(text: str, terms: Sequence[str], width: int = 160) -> str:
    """About `width` characters of `text` around the best-matching term."""
    body = text.split("\n")
    text = "\n".join(body[:-1]) if len(body) > 1 else text  # the index's last line is the side channel
    lower = text.lower()
    best = max(terms, key=lambda t: fuzz.partial_ratio(t, lower))
    align = fuzz.partial_ratio_alignment(best, lower)
    centre = align.dest_start if align else 0
    start = max(0, centre - width // 2)
    return " ".join(text[start : start + width].split())


def recall_turns(
    store: Store, decoder: Decoder, session_id: str, turn_ids: Sequence[int], labels: dict[int, str]
) -> list[RecalledTurn]:
    """Turns read back whole: each stitched from every page that holds a part of it, in order.

    Prose rows join with a space (the typesetter's wraps), or with nothing where a word was
    split across rows, and the turn's own line breaks (kept in the layout, `LineBox.breaks`)
    come back where they were; monospace rows keep the source's breaks (`turn_texts`). The
    speaker label the first row starts with is left out. A turn is verified when every one of
    its lines passed its check.
    """
    wanted = list(dict.fromkeys(turn_ids))
    if not wanted:
        return []
    by_id = {t.id: t for t in store.turns(session_id)}
    missing = [tid for tid in wanted if tid not in by_id]
    if missing:
        raise TurnNotFound(f"no turn {missing[0]} in session {session_id!r}")
    rows: dict[int, list[tuple[LineBox, str, bool | None]]] = {tid: [] for tid in wanted}
    pages: dict[int, list[int]] = {tid: [] for tid in wanted}
    for page in store.pages(session_id):
        mine = [tid for tid in page.turn_ids if tid in rows]
        if not mine:
            continue
        read = _recall_with_layout(store, decoder, session_id, page.id, refresh=False, cached_only=False)
        assert read is not None
        recall, layout = read
        if len(layout) != len(recall.lines):
            raise BackendError(f"page {page.id} was not read line by line; recall it whole instead")
        for box, line, ok in zip(layout, recall.lines, recall.verified, strict=True):
            if box.turn_id in rows:
                rows[box.turn_id].append((box, line, ok))
                if page.id not in pages[box.turn_id]:
                    pages[box.turn_id].append(page.id)
    out = []
    for tid in wanted:
        turn = by_id[tid]
        if not rows[tid]:  # not paged yet: the turn is still kept as text
            out.append(RecalledTurn(tid, turn.role, turn.name, turn.content or "", None, ()))
            continue
        flags = [ok for _, _, ok in rows[tid]]
        verified = None if all(f is None for f in flags) else all(f is True for f in flags)
        text = stitch([(box, line) for box, line, _ in rows[tid]], labels.get(tid))
        out.append(RecalledTurn(tid, turn.role, turn.name, text, verified, tuple(pages[tid])))
    return out


def stitch(rows: Sequence[tuple[LineBox, str]], label: str | None = None) -> str:
    """One turn's rows as read, joined back into the turn as typed (see `recall_turns`)."""
    out = ""
    prev: LineBox | None = None
    prev_read = ""
    for box, read in rows:
        breaks = box.breaks
        if prev is None and label:
            read = _without_label(read, label)
            n = len(label.split())  # the label's words were counted on the row
            breaks = tuple(k - n for k in breaks if k >= n)
        if box.kind == "code":
            # as `turn_texts`: a row that starts where the last ended continues it (a wrap)
            gap = max(0, box.start - prev.end) if prev is not None and prev.kind == "code" else 1
            out = read if prev is None else out + "\n" * gap + read
        else:
            text, lead = _with_breaks(read, breaks)
            if prev is None:
                out = text
            elif lead:
                out = out.rstrip(" ") + "\n" * lead + text
            elif prev.kind == "code" or out.endswith("\n"):
                out += ("" if out.endswith("\n") else "\n") + text
            else:  # a wrap: the space it ate, or nothing where it split a word wider than a row
                split = box.start == prev.end and len(prev_read.split()) == 1
                out += ("" if split else " ") + text
        prev, prev_read = box, read
    return out


def _with_breaks(read: str, breaks: Sequence[int]) -> tuple[str, int]:
    """A prose row's words with the turn's line breaks put back before the words they preceded;
    and how many breaks came before the row's first word."""
    words = read.split()
    text = ""
    for k, word in enumerate(words):
        if k:
            text += "\n" * breaks.count(k) or " "
        text += word
    return text + "\n" * sum(k >= len(words) > 0 for k in breaks), breaks.count(0)


def _without_label(read: str, label: str) -> str:
    """A turn's first row without the speaker label it starts with (as typeset or misread)."""
    return with_label(read, label)[len(label) :].lstrip()


def _restore_same_words(line: str, items: Sequence[VerbatimItem], check: bytes) -> str:
    """A verified line with each kept string typeset on it put back where the line holds its
    words (case and punctuation aside): the check confirms the words, the side channel the
    characters."""
    for item in items:
        if item.value in line:
            continue
        want = linecheck.line_words(item.value)
        spans = [(m.start(), m.end(), linecheck.fold(m.group())) for m in linecheck.WORD.finditer(line)]
        for i in range(len(spans) - len(want) + 1):
            if [w for _, _, w in spans[i : i + len(want)]] != want or not want:
                continue
            start, end = spans[i][0], spans[i + len(want) - 1][1]
            lead = len(item.value) - len(re.sub(r"^\W+", "", item.value))
            trail = len(item.value) - len(re.sub(r"\W+$", "", item.value))
            while lead and start > 0 and not line[start - 1].isalnum() and not line[start - 1].isspace():
                start, lead = start - 1, lead - 1
            while trail and end < len(line) and not line[end].isalnum() and not line[end].isspace():
                end, trail = end + 1, trail - 1
            fixed = line[:start] + item.value + line[end:]
            if linecheck.verified(fixed, check):
                line = fixed
            break
    return line
