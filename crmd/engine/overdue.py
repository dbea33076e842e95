"""Open tasks past their due time become overdue, once each, as a `task.overdue` event.

A page of tasks at a time, each page its own transaction, so a catch-up that finds a
hundred thousand tasks overdue holds one page of them, not all. Rules can chain on the
event (an escalation when a callback is overdue).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from crmd.engine.paging import OpenPage
from crmd.engine.taskevents import task_event
from crmd.events import TASK_OVERDUE
from crmd.store import queries as q
from crmd.store import work


def mark_overdue(open_page: OpenPage, now: datetime) -> Iterator[list[Row[Any]]]:
    """Mark the tasks falling overdue at `now`, a page at a time; yields the tasks each page
    marked, once its transaction has committed."""
    cursor: tuple[datetime, int] | None = None
    while True:
        with open_page() as txn:
            conn = txn.conn
            rows = work.tasks_falling_overdue(conn, now, cursor, txn.size)
            txn.rows = len(rows)
            if not rows:
                return
            cursor = (rows[-1].due_at, rows[-1].id)
            # Another daemon may have marked some since the read: their events are its own.
            marked = work.mark_tasks_overdue(conn, [r.id for r in rows])
            mine = [r for r in rows if r.id in marked]
            q.insert_events(conn, [task_event(r, TASK_OVERDUE, r.due_at, now) for r in mine])
        yield mine
        if len(rows) < txn.size:
            return
