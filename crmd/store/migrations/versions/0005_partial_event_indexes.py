"""index events by vehicle and by task only where they have one

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (index name, columns, the column a row must have to be indexed)
INDEXES = (
    ("ix_events_vehicle_id_type_at", ["vehicle_id", "type", "at"], "vehicle_id"),
    ("ix_events_task_id", ["task_id"], "task_id"),
)


def upgrade() -> None:
    for name, columns, required in INDEXES:
        op.drop_index(name, table_name="events")
        condition = sa.text(f"{required} IS NOT NULL")
        op.create_index(name, "events", columns, sqlite_where=condition, postgresql_where=condition)


def downgrade() -> None:
    for name, columns, _ in INDEXES:
        op.drop_index(name, table_name="events")
        op.create_index(name, "events", columns)
