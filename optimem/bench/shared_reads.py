"""Reads shared between a chat's replays wherever they make the same page image.

The benchmark replays each chat many times (the budget run, each fixed mode, each strict
target), and many of those replays make pages that are identical pixel for pixel: a Gundam
page and a Large page are both 1,280 px at the same density, a page the budget run keeps at
Small is the fixed Small run's page, and two strict runs that age the same Small page to Tiny
make the same Tiny image. For a decoder that reads the pixels and never the mode
(`Capabilities.reads_mode` False: the CPU engines), reading such a page again gives the same
text, at seconds a page. A later replay is therefore given the earlier read: its session gets
the cached text, as a service that had read the page would hold it, and `read_pages` scores it
as it scores any read, marked `shared_from` and left out of the reading-time figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from ..backends import Backend
from ..records import Page
from ..store import DecodedRecord
from .replay import Replay


class SharedReads:
    """The reads of one chat's replays, by what each page looks like to the decoder."""

    def __init__(self, backend: Backend) -> None:
        self.enabled = not backend.capabilities.reads_mode
        self._reads: dict[str, tuple[str, DecodedRecord, str]] = {}
        self._sighted: set[str] = set()

    def key(self, rep: Replay, page: Page) -> str | None:
        """What the decoder sees of a page (its image bytes, its layout, whence its reading aids,
        and its type size), or None where reads are not shared."""
        if not self.enabled:
            return None
        blobs = rep.memory.store.page_blobs(page.id)
        layout = [dataclasses.astuple(line) for line in blobs.layout]
        digest = hashlib.sha256(blobs.png)
        digest.update(json.dumps([layout, page.font_px, page.canvas]).encode())
        return digest.hexdigest()

    def first_sight(self, key: str | None) -> bool:
        """True the first time an image is asked about (and for every page where reads are not
        shared): the page to read; a later page of the same image will be given its read."""
        if key is None:
            return True
        seen = key in self._sighted
        self._sighted.add(key)
        return not seen

    def give(self, rep: Replay, page: Page, key: str | None) -> str | None:
        """Cache in `rep`'s session an earlier replay's read of the image `key`; returns that
        replay's label, or None (the page is read as usual)."""
        found = self._reads.get(key) if key is not None else None
        if found is None:
            return None
        label, record, index_text = found
        rep.memory.store.put_decoded(dataclasses.replace(record, page_id=page.id, mode=page.mode), index_text)
        return label

    def keep(self, rep: Replay, page: Page, key: str | None) -> None:
        """Remember `rep`'s read of `page` (the image `key`) for the replays after it."""
        if key is None or key in self._reads:
            return
        store = rep.memory.store
        record = store.get_decoded(page.id, page.mode, rep.memory.decoder.fingerprint())
        if record is not None:
            self._reads[key] = (rep.label, record, store.indexed_text([page.id]).get(page.id, ""))
