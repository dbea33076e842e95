"""The fires ledger: a row per fire, written once, and its failed fires: found, listed,
tried again and dismissed.

Each fire's key is unique in the ledger, so a fire happens once whoever writes it: a tick
asks which of a page's keys are there already, and a key written since raises
IntegrityError.

A fire that cannot be done (its customer is not in the store, its SMS has no number, a
template raises on its data) is kept in the ledger as `failed`, with the reason and what to
fix. Nothing a customer is owed is dropped: every tick tries again the failed fires whose
customer or vehicle has changed since their last try (the data was fixed), a new rule set
tries them all once, and `crmd fires retry` does it at once. A retry updates the fire's own
ledger row, so a fire still happens once. `crmd fires dismiss` closes one on purpose
(status `dismissed`, with who, when and why).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Exists,
    Row,
    Table,
    and_,
    func,
    or_,
    select,
    update,
)

from crmd.errors import CrmdError
from crmd.store.bulkwrite import insert_with_ids
from crmd.store.pages import members
from crmd.store.tables import customers, events, fires, vehicles

FAILED = "failed"
DISMISSED = "dismissed"


def existing_fire_keys(conn: Connection, keys: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for member in members(conn, fires.c.key, sorted(set(keys))):
        found.update(conn.execute(select(fires.c.key).where(member)).scalars())
    return found


def insert_fires(conn: Connection, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Ledger rows; returns their ids, in order. A key already there raises IntegrityError."""
    return insert_with_ids(conn, fires, rows)


def count_failed(conn: Connection) -> int:
    """How many failed fires wait for a retry or a dismissal."""
    query = select(func.count()).select_from(fires).where(fires.c.status == FAILED)
    return int(conn.execute(query).scalar_one())


def failed_to_retry(
    conn: Connection,
    *,
    after_id: int,
    limit: int,
    every: bool = False,
    ids: Sequence[int] = (),
) -> list[Row[Any]]:
    """Failed fires to try again, by id, with their anchoring event's seq.

    By default those whose customer or vehicle was created or changed after the fire was
    last tried (`recorded_at`); `every` takes them all, `ids` only those.
    """
    query = (
        select(fires)
        .where(fires.c.status == FAILED, fires.c.id > after_id)
        .order_by(fires.c.id)
        .limit(limit)
    )
    if ids:
        query = query.where(fires.c.id.in_(list(ids)))
    elif not every:
        query = query.where(or_(_changed_since_tried(customers), _changed_since_tried(vehicles)))
    return list(conn.execute(query))


def _changed_since_tried(table: Table) -> Exists:
    """Whether the fire's customer (or vehicle) row was written after the fire's last try."""
    subject = fires.c.customer_id if table is customers else fires.c.vehicle_id
    return (
        select(table.c.id)
        .where(table.c.id == subject, table.c.updated_at > fires.c.recorded_at)
        .exists()
    )


def events_by_seq(conn: Connection, seqs: Iterable[int]) -> dict[int, Row[Any]]:
    """The events that anchored these fires, by seq."""
    wanted = sorted(set(seqs))
    if not wanted:
        return {}
    return {r.seq: r for r in conn.execute(select(events).where(events.c.seq.in_(wanted)))}


def update_failed(conn: Connection, fire_id: int, values: Mapping[str, Any]) -> bool:
    """Write a retried fire's outcome over its failed row; False if it is no longer failed
    (another daemon retried it, or someone dismissed it, since it was read)."""
    kept = ("status", "late", "detail", "recorded_at", "customer_id", "vehicle_id")
    result = conn.execute(
        update(fires)
        .where(fires.c.id == fire_id, fires.c.status == FAILED)
        .values({k: values[k] for k in kept})
    )
    return result.rowcount == 1


def failed_ids(conn: Connection, ids: Sequence[int]) -> list[int]:
    """Which of these fire ids are failed fires."""
    if not ids:
        return []
    query = select(fires.c.id).where(fires.c.id.in_(list(ids)), fires.c.status == FAILED)
    return list(conn.execute(query).scalars())


def rule_ids(conn: Connection) -> list[str]:
    """The rules the ledger holds fires of (a rule since removed included)."""
    return list(conn.execute(select(fires.c.rule_id).distinct()).scalars())


def dismiss(conn: Connection, fire_id: int, reason: str, by: str, now: datetime) -> None:
    """Close a failed fire on purpose; it is never tried again."""
    row = conn.execute(select(fires).where(fires.c.id == fire_id)).first()
    if row is None:
        raise CrmdError(f"no fire {fire_id}; `crmd fires --failed` lists the failed ones")
    if row.status != FAILED:
        raise CrmdError(
            f"fire {fire_id} is {row.status}, not failed: only failed fires are dismissed"
        )
    detail = dict(row.detail or {})
    detail["dismissed"] = {"by": by, "at": now.isoformat(), "reason": reason}
    conn.execute(update(fires).where(fires.c.id == fire_id).values(status=DISMISSED, detail=detail))


def list_fires(
    conn: Connection,
    *,
    statuses: Sequence[str] = (),
    rule_id: str | None = None,
    customer_id: str | None = None,
    limit: int = 200,
) -> list[Row[Any]]:
    """Ledger rows, newest fire time first."""
    conditions: list[ColumnElement[bool]] = []
    if statuses:
        conditions.append(fires.c.status.in_(list(statuses)))
    if rule_id:
        conditions.append(fires.c.rule_id == rule_id)
    if customer_id:
        conditions.append(fires.c.customer_id == customer_id)
    query = select(fires).order_by(fires.c.fire_at.desc(), fires.c.id.desc()).limit(limit)
    if conditions:
        query = query.where(and_(*conditions))
    return list(conn.execute(query))
