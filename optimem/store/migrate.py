"""Bring a database's schema up to date with Alembic when the store opens; no alembic.ini needed.

The revisions live in `optimem/store/migrations/versions/` and run for both engines. A database
written by optimem 0.1 (numbered migrations recorded in ``schema_migrations``, up to version 5)
has exactly the schema of the baseline revision: it is stamped at the baseline, then upgraded.

Developers add a revision with ``python -m optimem.store.migrate revision "add pages.color"``
(Alembic's ``alembic revision``, numbered 0003, 0004, …), then write its `upgrade()`.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from ..errors import SchemaError

#: Where the revisions live.
LOCATION = Path(__file__).with_name("migrations")
#: The revision that is the schema optimem 0.1 left (its numbered migrations 1..5).
BASELINE = "0001"
#: The last numbered migration of optimem 0.1.
LEGACY_VERSION = 5


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(LOCATION))
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def script() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    revision = script().get_current_head()
    assert revision is not None
    return revision


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection, where: str) -> None:
    """Migrate the database behind `conn` (inside its write transaction) to the head revision.

    `where` names the database in messages. Raises SchemaError for a database written by a
    newer optimem.
    """
    lock = getattr(_dialect(conn), "lock_migrations", None)
    if lock is not None:
        lock(conn)
    current = current_revision(conn)
    if current is None and inspect(conn).has_table("schema_migrations"):
        current = _adopt_legacy(conn, where)
    if current == head():
        return
    if current is not None and current not in {s.revision for s in script().walk_revisions()}:
        raise SchemaError(
            f"{where} has schema revision {current}, newer than this optimem understands "
            f"({head()}): upgrade optimem"
        )
    command.upgrade(config(conn), "head")


def _adopt_legacy(conn: Connection, where: str) -> str:
    """Stamp a database of optimem 0.1's numbered migrations at the baseline revision."""
    version = conn.execute(text("SELECT MAX(version) FROM schema_migrations")).scalar() or 0
    if version > LEGACY_VERSION:
        raise SchemaError(
            f"{where} has schema version {version}, newer than this optimem understands: upgrade optimem"
        )
    if version < LEGACY_VERSION:
        raise SchemaError(
            f"{where} stopped at optimem 0.1's migration {version} of {LEGACY_VERSION}: "
            "open it once with optimem 0.1, then with this version"
        )
    command.stamp(config(conn), BASELINE)
    return BASELINE


def _dialect(conn: Connection) -> object:
    import importlib

    from .sql import DIALECTS

    return importlib.import_module(DIALECTS[conn.dialect.name])


def new_revision(message: str) -> str:
    """Write the next numbered revision file (Alembic's `revision` command); returns its path."""
    number = f"{int(head()) + 1:04d}"
    made = command.revision(config(), message, rev_id=number)
    assert made is not None and not isinstance(made, list)
    return made.path


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "revision":
        print(new_revision(argv[1]))
        return 0
    if len(argv) == 2 and argv[0] == "upgrade":
        from . import open_store

        store = open_store(argv[1])  # opening a store migrates it
        print(store.schema_version())
        store.close()
        return 0
    print('usage: python -m optimem.store.migrate revision "what it changes" | upgrade URL', file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
