"""Queries of the records crmd is told about and keeps: events, customers, vehicles, and
the dates rules set on them. Each takes an open Connection.

The engine reads them a page at a time, by index (events between two times, customers with
a birthday, dates in a range), or by the ids of a page's fires; intake writes them by id.
Each rule's watermark lives in crmd.store.watermarks, tasks and messages in
crmd.store.work, the fires ledger in crmd.store.ledger.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, and_, func, insert, select, update

from crmd.store.bulkwrite import insert_many
from crmd.store.pages import PAGE, members, past_cursor
from crmd.store.sharing import EVENTS_KEY, lock_for_transaction
from crmd.store.tables import customers, dates, events, vehicles

# ---------------------------------------------------------------- events


def max_event_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())


def events_between(
    conn: Connection,
    types: Sequence[str],
    after: datetime,
    upto: datetime,
    seq_upto: int,
    cursor: tuple[datetime, int] | None = None,
    limit: int = PAGE,
) -> list[Row[Any]]:
    """One page of events of these types with `after < at <= upto`, by (at, seq).

    Uses the (type, at) index. `cursor` is the (at, seq) of the last row of the previous page.
    """
    cond = and_(
        events.c.type.in_(types),
        events.c.at > after,
        events.c.at <= upto,
        events.c.seq <= seq_upto,
    )
    if cursor is not None:
        cond = and_(cond, past_cursor(events.c.at, events.c.seq, cursor))
    query = select(events).where(cond).order_by(events.c.at, events.c.seq).limit(limit)
    return list(conn.execute(query))


def events_recorded_between(
    conn: Connection,
    types: Sequence[str],
    seq_after: int,
    seq_upto: int,
    at_upto: datetime | None = None,
    limit: int = PAGE,
) -> list[Row[Any]]:
    """One page of events of these types recorded after seq_after, in arrival order."""
    cond = and_(events.c.type.in_(types), events.c.seq > seq_after, events.c.seq <= seq_upto)
    if at_upto is not None:
        cond = and_(cond, events.c.at <= at_upto)
    return list(conn.execute(select(events).where(cond).order_by(events.c.seq).limit(limit)))


def events_of_subject(
    conn: Connection, column: str, value: Any, types: Sequence[str], seq_upto: int
) -> list[Row[Any]]:
    """Every event of these types for one customer, vehicle or task, in arrival order."""
    col = events.c[column]
    return list(
        conn.execute(
            select(events)
            .where(col == value, events.c.type.in_(types), events.c.seq <= seq_upto)
            .order_by(events.c.seq)
        )
    )


def events_for_subjects(
    conn: Connection,
    column: str,
    ids: Iterable[str],
    types: Sequence[str],
    after: datetime,
    upto: datetime,
) -> list[Row[Any]]:
    """Events of these types for any of the given customers/vehicles in (after, upto]."""
    col = events.c[column]
    out: list[Row[Any]] = []
    for member in members(conn, col, sorted(set(ids))):
        out.extend(
            conn.execute(
                select(events).where(
                    member,
                    events.c.type.in_(types),
                    events.c.at > after,
                    events.c.at <= upto,
                )
            )
        )
    return out


def insert_events(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert new events (one batched statement; SQLite cannot batch with RETURNING).

    On PostgreSQL the writers of events take turns (crmd.store.sharing), so their `seq` values
    commit in order and no rule's event cursor passes an event still being written.
    """
    if rows:
        lock_for_transaction(conn, EVENTS_KEY)
        insert_many(conn, events, rows)


def existing_ids(conn: Connection, table: Table, ids: Iterable[str]) -> set[str]:
    """Which of these ids a table (customers, vehicles, events) already holds; ids only."""
    found: set[str] = set()
    for member in members(conn, table.c.id, sorted(set(ids))):
        found.update(conn.execute(select(table.c.id).where(member)).scalars())
    return found


def vehicle_owners(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    """The customer of each of these vehicles that the store holds, by vehicle id."""
    found: dict[str, str] = {}
    for member in members(conn, vehicles.c.id, sorted(set(ids))):
        query = select(vehicles.c.id, vehicles.c.customer_id).where(member)
        found.update({row.id: row.customer_id for row in conn.execute(query)})
    return found


def mileage_readings(
    conn: Connection, vehicle_id: str, upto_seq: int
) -> list[tuple[datetime, int]]:
    """(time, odometer km) of every event of a vehicle that carried a `mileage`."""
    readings = []
    for row in conn.execute(
        select(events.c.at, events.c.data)
        .where(events.c.vehicle_id == vehicle_id, events.c.seq <= upto_seq)
        .order_by(events.c.at)
    ):
        value = (row.data or {}).get("mileage")
        if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
            readings.append((row.at, int(value)))
    return readings


def get_event(conn: Connection, event_id: str) -> Row[Any] | None:
    return conn.execute(select(events).where(events.c.id == event_id)).first()


# ---------------------------------------------------------------- customers and vehicles


def customers_by_id(
    conn: Connection, ids: Iterable[str], columns: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """These customers' rows as {column: value}, by id; only `columns` (with id) if given."""
    return _records_by_id(conn, customers, ids, columns)


def vehicles_by_id(
    conn: Connection, ids: Iterable[str], columns: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    return _records_by_id(conn, vehicles, ids, columns)


def _records_by_id(
    conn: Connection, table: Table, ids: Iterable[str], columns: Sequence[str] | None
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    picked = table.c if columns is None else [table.c[c] for c in columns]
    for member in members(conn, table.c.id, sorted(set(ids))):
        result = conn.execute(select(*picked).where(member))
        # Zipping with the keys read once is many times faster than a Row's mapping per row.
        keys = tuple(result.keys())
        for row in result:
            record = dict(zip(keys, row, strict=True))
            out[record["id"]] = record
    return out


def customers_with_birthday(
    conn: Connection, month_days: Sequence[int], after: str = "", limit: int = PAGE
) -> list[Row[Any]]:
    """One page, by id, of the customers whose birthday (month * 100 + day) is one of these;
    `after` is the last id of the previous page."""
    return list(
        conn.execute(
            select(customers)
            .where(customers.c.birthday_md.in_(month_days), customers.c.id > after)
            .order_by(customers.c.id)
            .limit(limit)
        )
    )


def customers_page(conn: Connection, after_id: str, limit: int) -> list[Row[Any]]:
    """Customers in id order, one page after `after_id` (fan-out rules stream through them)."""
    return list(
        conn.execute(
            select(customers).where(customers.c.id > after_id).order_by(customers.c.id).limit(limit)
        )
    )


def set_customer_opt_out(conn: Connection, customer_id: str, now: datetime) -> None:
    conn.execute(
        update(customers).where(customers.c.id == customer_id).values(opt_out=True, updated_at=now)
    )


# ---------------------------------------------------------------- dates set by rules


def dates_between(
    conn: Connection,
    scope: str,
    name: str,
    low: date,
    high: date,
    cursor: tuple[date, str] | None = None,
    limit: int = PAGE,
) -> list[Row[Any]]:
    """One page of stored dates of one field with low <= value <= high, by (value, subject)
    (uses the field index); `cursor` is the (value, subject_id) of the previous page's last."""
    cond = and_(
        dates.c.field == name,
        dates.c.scope == scope,
        dates.c.value >= low,
        dates.c.value <= high,
    )
    if cursor is not None:
        cond = and_(cond, past_cursor(dates.c.value, dates.c.subject_id, cursor))
    query = select(dates).where(cond).order_by(dates.c.value, dates.c.subject_id).limit(limit)
    return list(conn.execute(query))


def set_date(
    conn: Connection,
    scope: str,
    subject_id: str,
    name: str,
    value: date,
    customer_id: str | None,
    now: datetime,
    set_by: str,
) -> None:
    key = and_(dates.c.scope == scope, dates.c.subject_id == subject_id, dates.c.field == name)
    values = {"value": value, "customer_id": customer_id, "set_at": now, "set_by": set_by}
    if conn.execute(update(dates).where(key).values(**values)).rowcount == 0:
        conn.execute(insert(dates).values(scope=scope, subject_id=subject_id, field=name, **values))


def dates_of(conn: Connection, scope: str, ids: Iterable[str]) -> dict[str, dict[str, date]]:
    """Every stored date of these customers or vehicles: {subject id: {field: date}}."""
    out: dict[str, dict[str, date]] = {}
    for member in members(conn, dates.c.subject_id, sorted(set(ids))):
        for row in conn.execute(select(dates).where(dates.c.scope == scope, member)):
            out.setdefault(row.subject_id, {})[row.field] = row.value
    return out
