"""Facts coming in: customers, vehicles and events, recorded idempotently by their ids."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from crmd.errors import CrmdError
from crmd.store import queries as q
from crmd.store.gcpause import collector_paused
from crmd.store.tables import customers, events, vehicles

CUSTOMER_FIELDS = ("name", "phone", "email", "birthday", "member", "opt_out")
VEHICLE_FIELDS = ("customer_id", "vin", "plate", "model")


@dataclass(frozen=True)
class NewEvent:
    """An event to record; `id` makes recording it again a no-op."""

    type: str
    at: datetime
    customer_id: str | None = None
    vehicle_id: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""


@dataclass
class IntakeResult:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    # What an import stored but would not refuse, such as columns no rule can name.
    warnings: list[str] = field(default_factory=list)


def new_event_id() -> str:
    return uuid.uuid4().hex


@collector_paused()  # a batch of thousands of rows makes no lasting cycles (crmd.store.gcpause)
def record_events(
    conn: Connection, new: Sequence[NewEvent], known_types: Sequence[str], now: datetime
) -> IntakeResult:
    """Record events not seen before (by id); a `customer.opted_out` also flags the customer."""
    result = IntakeResult()
    for e in new:
        if e.type not in known_types:
            raise CrmdError(
                f"unknown event type {e.type!r}; known types: {', '.join(known_types)} "
                f"(a site adds its own under event_types: in site.yaml)"
            )
        if e.at.tzinfo is None:
            raise CrmdError(f"event time {e.at.isoformat()} has no time zone")
    ids = [e.id or new_event_id() for e in new]
    seen = q.existing_ids(conn, events, ids)
    rows = []
    for e, event_id in zip(new, ids, strict=True):
        if event_id in seen:
            result.unchanged += 1
            continue
        seen.add(event_id)
        rows.append(
            {
                "id": event_id,
                "type": e.type,
                "at": e.at.astimezone(UTC),
                "customer_id": e.customer_id,
                "vehicle_id": e.vehicle_id,
                "task_id": None,
                "data": dict(e.data),
                "recorded_at": now,
            }
        )
        if e.type == "customer.opted_out" and e.customer_id:
            q.set_customer_opt_out(conn, e.customer_id, now)
    q.insert_events(conn, rows)
    result.added = len(rows)
    return result


def _birthday_md(birthday: date | None) -> int | None:
    return None if birthday is None else birthday.month * 100 + birthday.day


def upsert_customers(
    conn: Connection, records: Sequence[Mapping[str, Any]], now: datetime
) -> IntakeResult:
    """Add or update customers by id; a record identical to the stored one changes nothing."""
    return _upsert(conn, customers, records, CUSTOMER_FIELDS, now)


def upsert_vehicles(
    conn: Connection, records: Sequence[Mapping[str, Any]], now: datetime
) -> IntakeResult:
    return _upsert(conn, vehicles, records, VEHICLE_FIELDS, now)


def _upsert(
    conn: Connection,
    table: Any,
    records: Sequence[Mapping[str, Any]],
    fields: Sequence[str],
    now: datetime,
) -> IntakeResult:
    result = IntakeResult()
    ids = [r["id"] for r in records]
    existing: dict[str, Any] = {}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        for row in conn.execute(select(table).where(table.c.id.in_(chunk))):
            existing[row.id] = row
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise CrmdError(f"id {dup!r} appears more than once; each record needs its own id")
    inserts = []
    for record in records:
        values = {f: record[f] for f in fields if f in record}
        if table is customers and "birthday" in values:
            values["birthday_md"] = _birthday_md(values["birthday"])
        old = existing.get(record["id"])
        # Attributes a record names are set; the ones it does not name are kept.
        attributes = dict(old.attributes or {}) if old is not None else {}
        attributes.update(record.get("attributes") or {})
        values["attributes"] = attributes
        if old is None:
            inserts.append({"id": record["id"], **values, "created_at": now, "updated_at": now})
            continue
        current = dict(old._mapping)
        if all(current.get(k) == v for k, v in values.items()):
            result.unchanged += 1
            continue
        conn.execute(
            update(table).where(table.c.id == record["id"]).values(**values, updated_at=now)
        )
        result.changed += 1
    if inserts:
        conn.execute(insert(table), inserts)
    result.added = len(inserts)
    return result
