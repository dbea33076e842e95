"""outbox delivery: claims, next attempt, customer flag; dead replaces failed

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("to_customer", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("claim_token", sa.String(length=32), nullable=True))
    # Rows queued by older versions: due at their not_before; a message about a customer was
    # addressed to that customer (the safe reading: quiet hours and opt-out apply).
    outbox = sa.table(
        "outbox",
        sa.column("not_before", sa.DateTime()),
        sa.column("next_attempt_at", sa.DateTime()),
        sa.column("customer_id", sa.String()),
        sa.column("to_customer", sa.Boolean()),
    )
    op.execute(
        outbox.update().values(
            next_attempt_at=outbox.c.not_before,
            to_customer=outbox.c.customer_id.is_not(None),
        )
    )
    op.execute("UPDATE outbox SET status = 'dead' WHERE status = 'failed'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("next_attempt_at", existing_type=sa.DateTime(), nullable=False)
        batch_op.alter_column("to_customer", existing_type=sa.Boolean(), nullable=False)
        batch_op.drop_index(batch_op.f("ix_outbox_status_not_before"))
        batch_op.create_index(
            batch_op.f("ix_outbox_status_next_attempt_at"), ["status", "next_attempt_at"]
        )
        batch_op.create_index(batch_op.f("ix_outbox_channel_sent_at"), ["channel", "sent_at"])


def downgrade() -> None:
    op.execute("UPDATE outbox SET status = 'failed' WHERE status = 'dead'")
    op.execute("UPDATE outbox SET status = 'held' WHERE status = 'sending'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_channel_sent_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_status_next_attempt_at"))
        batch_op.create_index(batch_op.f("ix_outbox_status_not_before"), ["status", "not_before"])
        batch_op.drop_column("claim_token")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("to_customer")
        batch_op.drop_column("next_attempt_at")
