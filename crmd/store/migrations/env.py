"""Alembic environment: runs on the connection crmd hands over (see crmd/store/database.py)."""

from __future__ import annotations

from alembic import context

from crmd.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "crmd migrations run through crmd.store.database.Store.migrate(), not alembic's CLI"
    )

context.configure(
    connection=connection,
    # A site in a schema of its own keeps its migration state there too (crmd.store.siteschema).
    version_table_schema=context.config.attributes.get("schema"),
    target_metadata=metadata,
    render_as_batch=True,  # SQLite can only alter tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
