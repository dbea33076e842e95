"""Which daemons run on this store: each one's heartbeat row in the `daemon` table, and the
PostgreSQL sessions open on the database.

A daemon saves its heartbeat as its state changes and, at start, forgets those of daemons
long gone; `crmd status` (crmd.daemon.health) reads them, and on PostgreSQL tells a live
daemon from a dead one by its sessions' names.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select, text, update

from crmd.store.tables import daemon


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
