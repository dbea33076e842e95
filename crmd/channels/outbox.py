"""The outbox table's SQL: finding due messages, claiming and marking them, and what
`crmd outbox retry` and `cancel` do to one message."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, or_, select, update

from crmd.errors import CrmdError, NotFound
from crmd.store.tables import customers, outbox


def next_due(
    conn: Connection,
    now: datetime,
    skip_channels: Collection[str],
    skip_messages: Collection[int] = (),
) -> Row[Any] | None:
    """The queued message that is due first, locked against other senders (PostgreSQL)."""
    query = (
        select(outbox)
        .where(outbox.c.status == "queued", outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if skip_channels:
        query = query.where(outbox.c.channel.not_in(list(skip_channels)))
    if skip_messages:
        query = query.where(outbox.c.id.not_in(list(skip_messages)))
    return conn.execute(query).first()


def in_flight(conn: Connection) -> list[Row[Any]]:
    """Messages marked as being sent: by a live sender, or interrupted."""
    query = select(outbox).where(outbox.c.status == "sending").order_by(outbox.c.id)
    return list(conn.execute(query.with_for_update(skip_locked=True)))


def still_claimed(conn: Connection, message_id: int, token: str | None) -> bool:
    """Whether a message is still "sending" under the claim `token`."""
    query = select(outbox.c.id).where(
        outbox.c.id == message_id, outbox.c.status == "sending", outbox.c.claim_token == token
    )
    return conn.execute(query).first() is not None


def opted_out(conn: Connection, customer_id: str) -> bool:
    query = select(customers.c.opt_out).where(customers.c.id == customer_id)
    return bool(conn.execute(query).scalar())


def sent_since(conn: Connection, channel: str, since: datetime) -> int:
    """Messages of a channel sent after `since`, plus those being sent now (rate limits)."""
    query = (
        select(func.count())
        .select_from(outbox)
        .where(
            outbox.c.channel == channel,
            or_(
                (outbox.c.status == "sent") & (outbox.c.sent_at > since),
                outbox.c.status == "sending",
            ),
        )
    )
    return int(conn.execute(query).scalar_one())


def change(conn: Connection, message_id: int, token: str | None, **values: Any) -> bool:
    """Update one message; with a token, only while that claim still holds it."""
    query = update(outbox).where(outbox.c.id == message_id)
    if token is not None:
        query = query.where(outbox.c.claim_token == token, outbox.c.status == "sending")
    return conn.execute(query.values(**values)).rowcount == 1


def listed(conn: Connection, status: str | None = None, limit: int = 200) -> list[Row[Any]]:
    """Messages newest first, optionally of one status."""
    query = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if status:
        query = query.where(outbox.c.status == status)
    return list(conn.execute(query))


def get(conn: Connection, message_id: int) -> Row[Any]:
    row = conn.execute(select(outbox).where(outbox.c.id == message_id)).first()
    if row is None:
        raise NotFound(f"no message {message_id} in the outbox; see `crmd outbox`")
    return row


def retry(conn: Connection, message_id: int, now: datetime) -> Row[Any]:
    """Queue a held, dead or cancelled message again, to go at once (a person decided)."""
    row = get(conn, message_id)
    if row.status == "sent":
        raise CrmdError(f"message {message_id} was already sent; retrying would send it twice")
    if row.status == "sending":
        raise CrmdError(
            f"message {message_id} is being sent, or its send was interrupted and the sender "
            f"will check with the provider; wait for it to settle"
        )
    note = f"retried by hand at {now.isoformat()}"
    change(
        conn,
        message_id,
        None,
        status="queued",
        next_attempt_at=now,
        attempts=0,
        claim_token=None,
        claimed_at=None,
        last_error=f"{row.last_error} ({note})" if row.last_error else note,
    )
    return get(conn, message_id)


def cancel(conn: Connection, message_id: int, now: datetime) -> Row[Any]:
    """Cancel a message that has not gone out."""
    row = get(conn, message_id)
    if row.status in ("sent", "sending"):
        raise CrmdError(f"message {message_id} is {row.status}; it cannot be cancelled")
    if row.status != "cancelled":
        change(
            conn,
            message_id,
            None,
            status="cancelled",
            last_error=f"cancelled by hand at {now.isoformat()}",
        )
    return get(conn, message_id)
