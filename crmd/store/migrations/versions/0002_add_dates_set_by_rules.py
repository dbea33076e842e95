"""add dates set by rules, and an index of events by type and arrival

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dates",
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Date(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("set_at", sa.DateTime(), nullable=False),
        sa.Column("set_by", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("scope", "subject_id", "field", name=op.f("pk_dates")),
    )
    with op.batch_alter_table("dates", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dates_field_value"), ["field", "value"], unique=False)
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_events_type_seq"), ["type", "seq"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_events_type_seq"))
    with op.batch_alter_table("dates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dates_field_value"))

    op.drop_table("dates")
