"""Reads shared between a chat's fixed-mode replays whose pages are the same images.

A Gundam page and a Large page are both 1,280 px and typeset at the same density, so for a
decoder that reads pixels and never the mode (`Capabilities.reads_mode` False: the CPU
engines) the two fixed-mode runs make identical pages and would read them identically, each
page costing seconds. The second run takes the first one's reads instead: its sessions are
given the cached text, as a service that had read the page would hold it, and `read_pages`
then scores them exactly as it scores any read. Only what the positions cost differs between
the two runs, and that comes from the pages, not the reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence

from ..backends import Backend
from ..records import Page
from ..store import DecodedRecord
from .replay import Replay


class SharedReads:
    """The reads of one chat's fixed-mode replays, by what each page looks like."""

    def __init__(self, backend: Backend) -> None:
        self.enabled = not backend.capabilities.reads_mode
        self._reads: dict[str, tuple[str, DecodedRecord, str]] = {}

    @staticmethod
    def _key(rep: Replay, page: Page) -> str:
        """What the decoder sees of a page: its image bytes, its layout and its type size."""
        blobs = rep.memory.store.page_blobs(page.id)
        layout = [dataclasses.astuple(line) for line in blobs.layout]
        digest = hashlib.sha256(blobs.png)
        digest.update(json.dumps([layout, page.font_px, page.canvas]).encode())
        return digest.hexdigest()

    def give(self, rep: Replay, pages: Sequence[Page]) -> str | None:
        """Cache in `rep`'s session the reads an earlier replay made of these same pages, when
        it made them all; returns that replay's label, or None (they are read as usual)."""
        if not self.enabled or not pages:
            return None
        keys = [self._key(rep, p) for p in pages]
        if not all(k in self._reads for k in keys):
            return None
        store = rep.memory.store
        for page, key in zip(pages, keys, strict=True):
            _, record, index_text = self._reads[key]
            store.put_decoded(dataclasses.replace(record, page_id=page.id, mode=page.mode), index_text)
        return self._reads[keys[0]][0]

    def keep(self, rep: Replay, pages: Sequence[Page]) -> None:
        """Remember `rep`'s reads of `pages` for the replays after it."""
        if not self.enabled:
            return
        store, fingerprint = rep.memory.store, rep.memory.decoder.fingerprint()
        indexed = store.indexed_text([p.id for p in pages])
        for page in pages:
            record = store.get_decoded(page.id, page.mode, fingerprint)
            if record is not None:
                self._reads.setdefault(self._key(rep, page), (rep.label, record, indexed.get(page.id, "")))
