"""The work the rules hand out: staff's tasks and outbox messages, written, read and counted.

A fire writes its tasks and messages here, and may close a rule's open tasks
(crmd.engine.actions); `crmd task` lists tasks and records the staff's attempts and done
(crmd.engine.tasks); each tick marks the tasks fallen overdue. The outbox sender claims
and marks the messages itself (crmd.channels.outbox).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select, update

from crmd.store.bulkwrite import insert_many, insert_with_ids
from crmd.store.ledger import count_failed
from crmd.store.pages import PAGE, members, past_cursor
from crmd.store.sharing import EVENTS_KEY, lock_for_transaction
from crmd.store.tables import outbox, tasks


def insert_tasks(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    return insert_with_ids(conn, tasks, rows)


def insert_outbox(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    insert_many(conn, outbox, rows)


def open_tasks_of_rules(
    conn: Connection, rule_ids: Sequence[str], customer_id: str | None, vehicle_id: str | None
) -> list[Row[Any]]:
    cond = and_(tasks.c.rule_id.in_(rule_ids), tasks.c.status == "open")
    cond = and_(cond, tasks.c.customer_id == customer_id) if customer_id else cond
    cond = and_(cond, tasks.c.vehicle_id == vehicle_id) if vehicle_id else cond
    return list(conn.execute(select(tasks).where(cond).order_by(tasks.c.id)))


def tasks_falling_overdue(
    conn: Connection,
    now: datetime,
    cursor: tuple[datetime, int] | None = None,
    limit: int = PAGE,
) -> list[Row[Any]]:
    """One page of open tasks whose due time has passed and that are not yet marked overdue,
    by (due_at, id); `cursor` is the (due_at, id) of the last row of the previous page."""
    cond = and_(tasks.c.status == "open", tasks.c.overdue.is_(False), tasks.c.due_at <= now)
    if cursor is not None:
        cond = and_(cond, past_cursor(tasks.c.due_at, tasks.c.id, cursor))
    query = select(tasks).where(cond).order_by(tasks.c.due_at, tasks.c.id).limit(limit)
    return list(conn.execute(query))


def mark_tasks_overdue(conn: Connection, ids: Sequence[int]) -> set[int]:
    """Mark these tasks overdue; returns those this call marked (not already marked by
    another daemon since they were read), whose `task.overdue` events are this caller's."""
    lock_for_transaction(conn, EVENTS_KEY)  # before any row lock, as every event writer
    marked: set[int] = set()
    for member in members(conn, tasks.c.id, list(ids)):
        marked.update(
            conn.execute(
                update(tasks)
                .where(member, tasks.c.overdue.is_(False))
                .values(overdue=True)
                .returning(tasks.c.id)
            ).scalars()
        )
    return marked


def close_tasks(
    conn: Connection, ids: Sequence[int], status: str, now: datetime, note: str | None = None
) -> None:
    lock_for_transaction(conn, EVENTS_KEY)  # its caller writes events next; same lock order
    for member in members(conn, tasks.c.id, list(ids)):
        conn.execute(
            update(tasks)
            .where(member, tasks.c.status == "open")
            .values(status=status, closed_at=now, closed_note=note)
        )


def get_task(conn: Connection, task_id: int) -> Row[Any] | None:
    return conn.execute(select(tasks).where(tasks.c.id == task_id)).first()


def update_task(conn: Connection, task_id: int, **values: Any) -> None:
    lock_for_transaction(conn, EVENTS_KEY)  # its caller writes events next; same lock order
    conn.execute(update(tasks).where(tasks.c.id == task_id).values(**values))


def list_tasks(
    conn: Connection, now: datetime, *, role: str | None = None, everything: bool = False
) -> list[Row[Any]]:
    """Open tasks whose window has started (or, with everything, all tasks), by due time."""
    query = select(tasks)
    if not everything:
        query = query.where(tasks.c.status == "open", tasks.c.available_at <= now)
    if role:
        query = query.where(tasks.c.role == role)
    return list(conn.execute(query.order_by(tasks.c.due_at, tasks.c.id)))


def tasks_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Row[Any]]:
    out: dict[int, Row[Any]] = {}
    for member in members(conn, tasks.c.id, sorted(set(ids))):
        for row in conn.execute(select(tasks).where(member)):
            out[row.id] = row
    return out


def work_counts(conn: Connection, now: datetime) -> dict[str, int]:
    """Open and overdue tasks, and outbox messages by status, for `crmd status`."""
    is_open = tasks.c.status == "open"
    late = or_(tasks.c.overdue.is_(True), tasks.c.due_at <= now)
    counts = {
        "open_tasks": int(
            conn.execute(select(func.count()).select_from(tasks).where(is_open)).scalar_one()
        ),
        "overdue_tasks": int(
            conn.execute(select(func.count()).select_from(tasks).where(is_open, late)).scalar_one()
        ),
    }
    for status in ("queued", "sending", "held", "dead", "sent"):
        counts[f"{status}_messages"] = 0
    for status, n in conn.execute(select(outbox.c.status, func.count()).group_by(outbox.c.status)):
        counts[f"{status}_messages"] = n
    counts["failed_fires"] = count_failed(conn)
    return counts
