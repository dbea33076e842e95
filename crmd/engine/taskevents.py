"""The event a task's life writes (task.created, task.attempted, task.done, task.overdue,
task.cancelled), so rules can chain on it (P4: three unreachable attempts hand the customer
to sales).

A module of its own, needing nothing of the rule language or templates: `crmd task
attempt` and `crmd task done` write these events and should start fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Row


def task_event(
    task: Mapping[str, Any] | Row[Any],
    event_type: str,
    at: datetime,
    now: datetime,
    suffix: str = "",
    **data: Any,
) -> dict[str, Any]:
    """The event row for a task lifecycle change (so rules can chain on it)."""
    t = task if isinstance(task, Mapping) else task._mapping
    name = event_type.split(".", 1)[1]
    return {
        "id": f"task:{t['id']}:{name}{suffix}",
        "type": event_type,
        "at": at,
        "customer_id": t["customer_id"],
        "vehicle_id": t["vehicle_id"],
        "task_id": t["id"],
        "data": {"rule": t["rule_id"], "role": t["role"], **data},
        "recorded_at": now,
    }
