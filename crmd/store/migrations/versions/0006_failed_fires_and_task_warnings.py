"""index the failed fires, and give tasks a warning

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FAILED = sa.text("status = 'failed'")


def upgrade() -> None:
    # Failed fires are looked for on every tick (to retry them) and by `crmd status`: an
    # index of those rows only costs nothing for the ledger's other rows.
    op.create_index(
        "ix_fires_status", "fires", ["status"], sqlite_where=FAILED, postgresql_where=FAILED
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("warning", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("warning")
    op.drop_index("ix_fires_status", table_name="fires")
