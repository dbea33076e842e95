"""keep each rule's last error, and since when it has been failing

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COLUMNS = ("last_error", "failing_since", "last_failed_at")


def upgrade() -> None:
    with op.batch_alter_table("rule_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("failing_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("last_failed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rule_state", schema=None) as batch_op:
        for name in reversed(COLUMNS):
            batch_op.drop_column(name)
