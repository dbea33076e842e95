"""Every query the engine and the CLI make, in one place; each takes an open Connection."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Row,
    Table,
    and_,
    any_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from crmd.store.bulkwrite import allocate_ids, fast_ids, insert_many
from crmd.store.ledger import count_failed
from crmd.store.sharing import EVENTS_KEY, lock_for_transaction
from crmd.store.tables import (
    customers,
    daemon,
    dates,
    events,
    fires,
    outbox,
    rule_state,
    tasks,
    vehicles,
)

# The most rows a page reads (events, dates, customers), its fires committing together, so
# memory stays bounded whatever the size of the store. A larger page rewrites the
# customer-led index pages fewer times in a catch-up (2,000 made commits take 2.4 times as
# long at 100k fires); a smaller one holds SQLite's write lock for less and redoes less
# after a crash: the engine sizes each rule's pages below this by time (crmd.engine.paging).
PAGE = 10_000


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _members(
    conn: Connection, column: ColumnElement[Any], values: Sequence[Any]
) -> Iterator[ColumnElement[bool]]:
    """`column IN values` as conditions over chunks of the values, one statement each.

    On PostgreSQL a chunk is one array parameter (`column = ANY(:values)`) of up to 10,000
    values: the statement's text stays the same whatever the count, and neither SQLAlchemy
    nor the driver renders and parses a parameter per value (for a page of fires that was
    a tenth of the tick). Elsewhere, IN lists of 500 (SQLite caps a statement's parameters).
    """
    if conn.dialect.name == "postgresql":
        for chunk in _chunks(values, 10_000):
            yield column == any_(bindparam(None, list(chunk), type_=ARRAY(column.type)))
    else:
        for chunk in _chunks(values):
            yield column.in_(chunk)


def _past_cursor(
    at: ColumnElement[Any], tiebreak: ColumnElement[Any], cursor: tuple[Any, Any]
) -> ColumnElement[bool]:
    """Rows after `cursor` in (at, tiebreak) order, the next page of a keyset scan.

    `at >= last` lets an index range start at the cursor; the OR alone made each page scan
    the window from its beginning again.
    """
    last_at, last_tiebreak = cursor
    return and_(at >= last_at, (at > last_at) | (tiebreak > last_tiebreak))


# ---------------------------------------------------------------- rule state


def max_event_seq(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(events.c.seq), 0))).scalar_one())


def load_rule_states(conn: Connection) -> dict[str, Row[Any]]:
    return {row.rule_id: row for row in conn.execute(select(rule_state))}


def load_rule_state(conn: Connection, rule_id: str) -> Row[Any]:
    """One rule's state, by its primary key (a tick reads each rule's once, not all)."""
    return conn.execute(select(rule_state).where(rule_state.c.rule_id == rule_id)).one()


def create_rule_state(
    conn: Connection,
    rule_id: str,
    since: datetime,
    event_seq: int,
    now: datetime,
    trigger: str = "",
    watermark: datetime | None = None,
) -> None:
    """A new rule's state: in force from `since`, done up to `watermark` (`since` unless
    it takes over what is still due from before: crmd.engine.takeover)."""
    conn.execute(
        insert(rule_state).values(
            rule_id=rule_id,
            since=since,
            watermark=since if watermark is None else watermark,
            event_seq=event_seq,
            updated_at=now,
            trigger=trigger,
        )
    )


def save_rule_state(
    conn: Connection,
    rule_id: str,
    watermark: datetime,
    event_seq: int,
    now: datetime,
    trigger: str | None = None,
) -> None:
    values: dict[str, Any] = {"watermark": watermark, "event_seq": event_seq, "updated_at": now}
    if trigger is not None:
        values["trigger"] = trigger
    conn.execute(update(rule_state).where(rule_state.c.rule_id == rule_id).values(**values))


def oldest_watermark(conn: Connection, rule_ids: Sequence[str]) -> datetime | None:
    """The earliest watermark of these rules: where a catch-up starts."""
    value: datetime | None = conn.execute(
        select(func.min(rule_state.c.watermark)).where(rule_state.c.rule_id.in_(rule_ids))
    ).scalar_one()
    return value


# ---------------------------------------------------------------- events


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
        cond = and_(cond, _past_cursor(events.c.at, events.c.seq, cursor))
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
    for member in _members(conn, col, sorted(set(ids))):
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
    for member in _members(conn, table.c.id, sorted(set(ids))):
        found.update(conn.execute(select(table.c.id).where(member)).scalars())
    return found


def vehicle_owners(conn: Connection, ids: Iterable[str]) -> dict[str, str]:
    """The customer of each of these vehicles that the store holds, by vehicle id."""
    found: dict[str, str] = {}
    for member in _members(conn, vehicles.c.id, sorted(set(ids))):
        query = select(vehicles.c.id, vehicles.c.customer_id).where(member)
        found.update({row.id: row.customer_id for row in conn.execute(query)})
    return found


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
    for member in _members(conn, table.c.id, sorted(set(ids))):
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


def set_customer_opt_out(conn: Connection, customer_id: str, now: datetime) -> None:
    conn.execute(
        update(customers).where(customers.c.id == customer_id).values(opt_out=True, updated_at=now)
    )


# ---------------------------------------------------------------- ledger, tasks, outbox


def existing_fire_keys(conn: Connection, keys: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for member in _members(conn, fires.c.key, sorted(set(keys))):
        found.update(conn.execute(select(fires.c.key).where(member)).scalars())
    return found


def insert_fires(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Ledger rows; returns their ids, in order. A key already there raises IntegrityError."""
    return _insert_with_ids(conn, fires, rows)


def insert_tasks(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    return _insert_with_ids(conn, tasks, rows)


def _insert_with_ids(
    conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> list[int]:
    """Insert rows and return their new ids in the rows' order."""
    if not rows:
        return []
    if not fast_ids(conn):
        result = conn.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), list(rows)
        )
        return [r.id for r in result]
    ids = allocate_ids(conn, table, len(rows))
    insert_many(conn, table, rows, ids)
    return ids


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
        cond = and_(cond, _past_cursor(tasks.c.due_at, tasks.c.id, cursor))
    query = select(tasks).where(cond).order_by(tasks.c.due_at, tasks.c.id).limit(limit)
    return list(conn.execute(query))


def mark_tasks_overdue(conn: Connection, ids: Sequence[int]) -> set[int]:
    """Mark these tasks overdue; returns those this call marked (not already marked by
    another daemon since they were read), whose `task.overdue` events are this caller's."""
    lock_for_transaction(conn, EVENTS_KEY)  # before any row lock, as every event writer
    marked: set[int] = set()
    for member in _members(conn, tasks.c.id, list(ids)):
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
    for member in _members(conn, tasks.c.id, list(ids)):
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
    for member in _members(conn, tasks.c.id, sorted(set(ids))):
        for row in conn.execute(select(tasks).where(member)):
            out[row.id] = row
    return out


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
        cond = and_(cond, _past_cursor(dates.c.value, dates.c.subject_id, cursor))
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


def customers_page(conn: Connection, after_id: str, limit: int) -> list[Row[Any]]:
    """Customers in id order, one page after `after_id` (fan-out rules stream through them)."""
    return list(
        conn.execute(
            select(customers).where(customers.c.id > after_id).order_by(customers.c.id).limit(limit)
        )
    )


def dates_of(conn: Connection, scope: str, ids: Iterable[str]) -> dict[str, dict[str, date]]:
    """Every stored date of these customers or vehicles: {subject id: {field: date}}."""
    out: dict[str, dict[str, date]] = {}
    for member in _members(conn, dates.c.subject_id, sorted(set(ids))):
        for row in conn.execute(select(dates).where(dates.c.scope == scope, member)):
            out.setdefault(row.subject_id, {})[row.field] = row.value
    return out


# ---------------------------------------------------------------- daemon heartbeat


def save_heartbeat(conn: Connection, daemon_id: str, **values: Any) -> None:
    """Insert or update this daemon's row of the `daemon` table."""
    if conn.execute(update(daemon).where(daemon.c.id == daemon_id).values(**values)).rowcount:
        return
    conn.execute(insert(daemon).values(id=daemon_id, **values))


def forget_heartbeats(conn: Connection, before: datetime, keep: str) -> int:
    """Delete the rows of daemons not heard from since `before` (all but `keep`)."""
    query = delete(daemon).where(daemon.c.updated_at < before, daemon.c.id != keep)
    return int(conn.execute(query).rowcount)


def heartbeats(conn: Connection) -> list[Row[Any]]:
    """Every daemon that ever ran on this store, the most recently updated first."""
    return list(conn.execute(select(daemon).order_by(daemon.c.updated_at.desc())))


def live_session_names(conn: Connection) -> set[str]:
    """The application names of the other sessions on this PostgreSQL database."""
    return set(
        conn.execute(
            text(
                "SELECT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalars()
    )


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
