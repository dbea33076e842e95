"""Staff work on tasks: call attempts and completion, each recorded as a task event."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row

from crmd.engine.taskevents import task_event
from crmd.errors import CrmdError, NotFound
from crmd.events import ATTEMPT_OUTCOMES, TASK_ATTEMPTED, TASK_DONE
from crmd.store import queries as q
from crmd.store import work


def _open_task(conn: Connection, task_id: int) -> Row[Any]:
    task = work.get_task(conn, task_id)
    if task is None:
        raise NotFound(f"there is no task {task_id}; `crmd tasks --all` lists them")
    if task.status != "open":
        raise CrmdError(f"task {task_id} is already {task.status}; nothing to do")
    return task


def attempt(
    conn: Connection,
    task_id: int,
    outcome: str,
    now: datetime,
    *,
    score: int | None = None,
    note: str | None = None,
) -> Row[Any]:
    """Record a call attempt. `reached` closes the task; other outcomes keep it open (P4)."""
    if outcome not in ATTEMPT_OUTCOMES:
        raise CrmdError(f"outcome must be one of {', '.join(ATTEMPT_OUTCOMES)}, not {outcome!r}")
    if score is not None and not 1 <= score <= 10:
        raise CrmdError(f"score must be from 1 to 10, not {score}")
    task = _open_task(conn, task_id)
    number = task.attempts + 1
    values: dict[str, Any] = {"attempts": number, "outcome": outcome}
    if score is not None:
        values["score"] = score
    events = [
        task_event(
            task,
            TASK_ATTEMPTED,
            now,
            now,
            f":{number}",
            outcome=outcome,
            score=score,
            note=note or "",
            attempt=number,
        )
    ]
    if outcome == "reached":
        values.update(status="done", closed_at=now, closed_note=note)
        events.append(task_event(task, TASK_DONE, now, now, note=note or ""))
    work.update_task(conn, task_id, **values)
    q.insert_events(conn, events)
    updated = work.get_task(conn, task_id)
    assert updated is not None
    return updated


def done(conn: Connection, task_id: int, now: datetime, *, note: str | None = None) -> Row[Any]:
    """Close a task as done."""
    task = _open_task(conn, task_id)
    work.update_task(conn, task_id, status="done", closed_at=now, closed_note=note)
    q.insert_events(conn, [task_event(task, TASK_DONE, now, now, note=note or "")])
    updated = work.get_task(conn, task_id)
    assert updated is not None
    return updated
