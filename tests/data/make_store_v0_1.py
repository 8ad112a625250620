"""Make `store_v0_1.db`: a database written by optimem 0.1.0 (commit 35d0a14), before the store
moved to SQLAlchemy and Alembic. Run once at that commit; the migration tests open the file it
made and check that every turn, page, verbatim string and reading aid survives the upgrade.

    git worktree add /tmp/v01 35d0a14 && cd /tmp/v01
    PYTHONPATH=$PWD python tests/data/make_store_v0_1.py tests/data/store_v0_1.db
"""

import sqlite3
import sys
from pathlib import Path

from optimem import OpticalMemory
from optimem.modes import NoAging

TURNS = [
    ("user", "Our deploy of build 7.4.2 failed on db-replica-03.eu-west at 09:14; ticket OPS-4821."),
    ("assistant", "I see it: the migration timed out after 300 s. Retry with --lock-timeout=600."),
    ("user", "Done. Also, Zoë Brontë from Bareilles asked about invoice INV-2024-0193 for $1,250.00."),
    ("assistant", "Invoice INV-2024-0193 was paid on 2024-03-02; send her https://pay.example.com/r/8f2c."),
    ("user", "Thanks. Last thing: rotate the key kid_5f3a91 before Friday."),
    ("assistant", "Scheduled: kid_5f3a91 rotates Thursday 18:00 UTC, owner @maria.k."),
    ("user", "Great, keep this thread short from now on."),
]


def main(path: str) -> None:
    Path(path).unlink(missing_ok=True)
    mem = OpticalMemory(path, backend="test-double", policy=NoAging(), keep_recent_turns=2, decode="now")
    s = mem.session("acme/thread-1")
    s.add_turns([{"role": r, "content": c} for r, c in TURNS])
    created = s.compress(flush=True).created
    for page in s.pages():
        s.recall_page(page.id)  # a cached decode with its index row
    other = mem.session("plain")
    other.add_turns([{"role": "user", "content": "A session with no pages yet."}])
    mem.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
    db.execute("VACUUM")
    db.close()
    print(path, "pages", created)


if __name__ == "__main__":
    main(sys.argv[1])

# store_v0_1.pg.sql is the same conversation written by 0.1.0 into PostgreSQL (decode="now",
# same TURNS, sessions "acme/thread-1" and "plain"), dumped with
#     pg_dump --inserts --no-owner --no-privileges URL > tests/data/store_v0_1.pg.sql
# from a throwaway server (optimem.store.pg_local.LocalPostgres) at the same commit.
