"""The same manual event recorded twice by mistake: a call entered again, a double click.

Staff record what happened by hand (`crmd task attempt`, `crmd event`). The same call
recorded twice would count twice toward P4's three attempts and send P6's thank-you SMS
twice; the same complaint twice would open two complaint tasks. A manual event that
repeats one recorded less than a minute before it (the same task and outcome; the same
type, customer, vehicle and data) is reported instead, and nothing is recorded; `--again`
records it all the same, for the rare real second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Connection, select

from crmd.errors import CrmdError
from crmd.events import TASK_ATTEMPTED
from crmd.store.tables import events

# Two manual records of the same thing less than this apart are one thing recorded twice.
WINDOW = timedelta(minutes=1)


class Repeated(CrmdError):
    """A manual event that repeats one just recorded."""


def _near(at: datetime) -> Any:
    return events.c.at.between(at - WINDOW, at + WINDOW)


def _within(at: datetime, other: datetime) -> bool:
    return abs(at - other) < WINDOW


def previous_attempt(
    conn: Connection, task_id: int, outcome: str, now: datetime
) -> datetime | None:
    """When this task's previous attempt was recorded, if it had this outcome and was less
    than a minute from `now`; else None."""
    query = (
        select(events.c.at, events.c.data)
        .where(events.c.task_id == task_id, events.c.type == TASK_ATTEMPTED, _near(now))
        .order_by(events.c.seq.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    if row is None or (row.data or {}).get("outcome") != outcome:
        return None
    at: datetime = row.at
    return at if _within(now, at) else None


def same_event(
    conn: Connection,
    event_type: str,
    at: datetime,
    customer_id: str | None,
    vehicle_id: str | None,
    data: Mapping[str, Any],
) -> datetime | None:
    """When an event of this type, customer, vehicle and data was recorded less than a
    minute from `at`; else None."""
    query = select(events.c.at, events.c.data).where(
        events.c.type == event_type,
        events.c.customer_id.is_(None)
        if customer_id is None
        else events.c.customer_id == customer_id,
        events.c.vehicle_id.is_(None) if vehicle_id is None else events.c.vehicle_id == vehicle_id,
        _near(at),
    )
    for row in conn.execute(query):
        if _within(at, row.at) and dict(row.data or {}) == dict(data):
            found: datetime = row.at
            return found
    return None


def refuse(what: str, recorded: datetime, zone: tzinfo) -> Repeated:
    return Repeated(
        f"{what} is already recorded at {recorded.astimezone(zone):%Y-%m-%d %H:%M:%S}; "
        f"nothing was recorded. Pass --again to record a second one."
    )
