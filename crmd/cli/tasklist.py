"""The callback specialists' list (`crmd tasks`): each task as a row, or as JSON.

Plain aligned columns (crmd.cli.columns), not a rich table: the list is often thousands
of rows long, and is read all day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from crmd.cli.columns import Cell, iso_time, local_time, print_columns

if TYPE_CHECKING:
    from sqlalchemy import Row

    from crmd.site import Site


def is_overdue(task: Row[Any], now: datetime) -> bool:
    return bool(task.status == "open" and (task.overdue or task.due_at <= now))


def task_json(task: Row[Any], now: datetime, site: Site) -> dict[str, Any]:
    return {
        "id": task.id,
        "rule": task.rule_id,
        "role": task.role,
        "title": task.title,
        "note": task.note,
        "customer_id": task.customer_id,
        "vehicle_id": task.vehicle_id,
        "available_at": iso_time(task.available_at, site),
        "due_at": iso_time(task.due_at, site),
        "status": task.status,
        "overdue": is_overdue(task, now),
        "attempts": task.attempts,
        "outcome": task.outcome,
        "score": task.score,
        "closed_at": iso_time(task.closed_at, site),
        "warning": task.warning,
    }


def tasks_table(rows: Sequence[Row[Any]], now: datetime, site: Site) -> None:
    cells = []
    for t in rows:
        if is_overdue(t, now):
            status = Cell("OVERDUE", colour="red")
        elif t.attempts:
            status = Cell(f"{t.status} ({t.attempts} attempt{'s' if t.attempts > 1 else ''})")
        else:
            status = Cell(t.status)
        title = Cell(t.title, below=f"⚠ {t.warning}" if t.warning else "", below_colour="yellow")
        cells.append(
            [
                str(t.id),
                local_time(t.due_at, site),
                t.role,
                title,
                t.customer_id or "",
                t.rule_id,
                status,
            ]
        )
    print_columns(("id", "due", "role", "title", "customer", "rule", "status"), cells, stretch=3)
