"""Alembic's environment: migrations run on the connection the store hands over (see
`optimem.store.migrate`), inside the store's own write transaction."""

from alembic import context

from optimem.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "optimem migrates a database when it opens it: python -m optimem.store.migrate upgrade URL"
    )
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
