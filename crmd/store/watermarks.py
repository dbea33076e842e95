"""Each rule's state in the store: in force since when, done up to which watermark, and
up to which recorded event (`event_seq`) it has looked.

A tick reads a rule's state, works through what fell due between its watermark and now,
and saves the new watermark in the same transaction as the fires it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from crmd.store.tables import rule_state


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
