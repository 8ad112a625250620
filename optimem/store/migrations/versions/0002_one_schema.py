"""One schema for both engines; reading aids in their own table; verified lines with the text.

- Every table names its tenant on both engines, written by the store (PostgreSQL's generated
  tenant columns become plain ones; SQLite gains them).
- The reading aids that optimem 0.1 kept as fake verbatim rows (kind ``lines``: base64 line
  checks; kind ``lexicon``: rare words, ``…`` when cut at the cap) move to `reading_aids`.
- `decoded` gains `verified` (lines that passed their check when read) and, on SQLite, the
  primary key PostgreSQL has (page, mode, fingerprint); `verbatim` gains an `id` on SQLite.
- ``schema_migrations`` gets a version 6 row, so optimem 0.1 refuses the database ("upgrade
  optimem") instead of writing the old way into it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import base64
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

#: optimem 0.1's verbatim kinds that were reading aids, and its lexicon's "cut here" mark.
LINES, LEXICON, TRUNCATED = "lines", "lexicon", "\u2026"

_SQLITE_TENANT = "CASE WHEN instr({0}, '/') > 0 THEN substr({0}, 1, instr({0}, '/') - 1) ELSE '' END"


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _sqlite_tenants()
    else:
        _postgres_tenants()
    _move_reading_aids()
    if sqlite:
        _sqlite_rebuild()
    else:
        op.add_column("decoded", sa.Column("verified", sa.Integer))
    op.get_bind().execute(
        sa.text("INSERT INTO schema_migrations VALUES (6, 'm006_moved_to_alembic', :t)"),
        {"t": datetime.now(UTC).isoformat()},
    )


def _sqlite_tenants() -> None:
    for table, key in (("sessions", "id"), ("turns", "session_id"), ("pages", "session_id")):
        op.add_column(table, sa.Column("tenant", sa.Text, nullable=False, server_default=""))
        op.execute(f"UPDATE {table} SET tenant = {_SQLITE_TENANT.format(key)}")
    op.add_column("page_spans", sa.Column("tenant", sa.Text, nullable=False, server_default=""))
    op.execute("UPDATE page_spans SET tenant = (SELECT tenant FROM pages WHERE pages.id = page_id)")


def _postgres_tenants() -> None:
    for table in ("sessions", "turns", "pages"):
        op.execute(f"ALTER TABLE {table} ALTER COLUMN tenant DROP EXPRESSION")
        op.alter_column(table, "tenant", nullable=False)
    op.execute("DROP FUNCTION optimem_tenant(text)")


def _move_reading_aids() -> None:
    aids = op.create_table(
        "reading_aids",
        sa.Column("page_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("checks", sa.LargeBinary, nullable=False),
        sa.Column("lexicon", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("lexicon_complete", sa.Boolean, nullable=False),
        sa.ForeignKeyConstraint(["page_id"], ["pages.id"], ondelete="CASCADE"),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT v.page_id, p.tenant, v.kind, v.value FROM verbatim v JOIN pages p ON p.id = v.page_id"
            " WHERE v.kind IN ('lines', 'lexicon')"
        )
    ).all()
    by_page: dict[int, dict] = {}
    for page_id, tenant, kind, value in rows:
        aid = by_page.setdefault(
            page_id,
            {"page_id": page_id, "tenant": tenant, "checks": b"", "lexicon": [], "lexicon_complete": True},
        )
        if kind == LINES:
            aid["checks"] = base64.b64decode(value)
        else:
            words = value.split()
            aid["lexicon"] = [w for w in words if w != TRUNCATED]
            aid["lexicon_complete"] = TRUNCATED not in words
    if by_page:
        op.bulk_insert(aids, list(by_page.values()))
    op.execute("DELETE FROM verbatim WHERE kind IN ('lines', 'lexicon')")


def _sqlite_rebuild() -> None:
    """SQLite cannot add a primary key or an FTS5 column in place: copy into new tables."""
    for statement in (
        # verbatim: an id (insertion order, as rowid gave), the tenant
        "CREATE TABLE verbatim_new (id INTEGER PRIMARY KEY AUTOINCREMENT, page_id INTEGER NOT NULL"
        " REFERENCES pages(id) ON DELETE CASCADE, tenant TEXT NOT NULL, kind TEXT NOT NULL,"
        ' value TEXT NOT NULL, turn_id INTEGER NOT NULL, "offset" INTEGER NOT NULL)',
        'INSERT INTO verbatim_new (page_id, tenant, kind, value, turn_id, "offset")'
        ' SELECT v.page_id, p.tenant, v.kind, v.value, v.turn_id, v."offset"'
        " FROM verbatim v JOIN pages p ON p.id = v.page_id ORDER BY v.rowid",
        "DROP TABLE verbatim",
        "ALTER TABLE verbatim_new RENAME TO verbatim",
        "CREATE INDEX verbatim_page ON verbatim(page_id)",
        # decoded: keyed by fingerprint as on PostgreSQL, the tenant, the verified count
        "CREATE TABLE decoded_new (page_id INTEGER NOT NULL REFERENCES pages(id) ON DELETE CASCADE,"
        " tenant TEXT NOT NULL, mode TEXT NOT NULL, backend TEXT NOT NULL, fingerprint TEXT NOT NULL,"
        " text TEXT NOT NULL, lines TEXT, confidence REAL NOT NULL, seconds REAL NOT NULL,"
        " verified INTEGER, created_at TEXT NOT NULL, PRIMARY KEY (page_id, mode, fingerprint))",
        "INSERT INTO decoded_new SELECT d.page_id, p.tenant, d.mode, d.backend, d.fingerprint, d.text,"
        " d.lines, d.confidence, d.seconds, NULL, d.created_at FROM decoded d JOIN pages p ON p.id = d.page_id",
        "DROP TABLE decoded",
        "ALTER TABLE decoded_new RENAME TO decoded",
        # page_index: the tenant
        "CREATE VIRTUAL TABLE page_index_new USING fts5("
        " text, page_id UNINDEXED, session_id UNINDEXED, tenant UNINDEXED, tokenize = 'trigram')",
        "INSERT INTO page_index_new (text, page_id, session_id, tenant)"
        " SELECT i.text, i.page_id, i.session_id, p.tenant FROM page_index i JOIN pages p ON p.id = i.page_id",
        "DROP TABLE page_index",
        "ALTER TABLE page_index_new RENAME TO page_index",
    ):
        op.execute(statement)


def downgrade() -> None:
    raise NotImplementedError("optimem migrates forward only; restore a backup to go back")
