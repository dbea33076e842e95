"""Several daemons on one PostgreSQL store: who evaluates which rule right now.

Each rule's evaluation (all its pages, each page its own transaction) runs under a
PostgreSQL session-level advisory lock keyed by the site's schema and the rule id
(crmd.store.siteschema), taken with `pg_try_advisory_lock` on a connection of its own. A daemon
that does not get it skips the rule for this tick: another daemon is evaluating it. The
lock dies with its connection, so a daemon killed mid-rule frees the rule as soon as the
server notices the connection is gone (at once for a killed process, whose kernel closes
the socket; within the TCP keepalive time set in `crmd.store.connections.KEEPALIVE_OPTIONS`
for a host that vanished). The fires ledger's unique key stays the last guard: a page
repeated after a crash finds its fires done.

Event inserts take a transaction-scoped lock too, so event `seq` values become visible in
order: a rule's event cursor never passes an event still being written by another daemon.
So does the sender's check of a channel's rate limit: senders count and claim one at a
time, so several daemons together never send more than the limit.

On SQLite none of this applies: one daemon per store, enforced by `crmd.daemon.instance`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from crmd.store.database import Store, StoreError
from crmd.store.siteschema import (
    EVENTS_KEY,
    NAMESPACE,
    RULES_NAMESPACE,
    START_KEY,
    channel_lock,
    rule_key,
    rule_lock,
    schema_of,
    site_lock,
)

__all__ = [
    "EVENTS_KEY",
    "NAMESPACE",
    "RULES_NAMESPACE",
    "START_KEY",
    "RuleLocks",
    "lock_channel_for_transaction",
    "lock_for_transaction",
    "rule_key",
]

logger = logging.getLogger(__name__)


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def lock_for_transaction(conn: Connection, key: int) -> None:
    """Wait for a site-wide lock held until this transaction ends (PostgreSQL only)."""
    if is_postgres(conn):
        conn.execute(*site_lock(schema_of(conn), key).call("pg_advisory_xact_lock"))


def lock_channel_for_transaction(conn: Connection, channel: str) -> None:
    """Wait for a channel's rate-limit lock, held until this transaction ends (PostgreSQL)."""
    if is_postgres(conn):
        conn.execute(*channel_lock(schema_of(conn), channel).call("pg_advisory_xact_lock"))


class RuleLocks:
    """Per-rule locks across daemons; always granted on SQLite."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.shared = not store.is_sqlite

    @contextlib.contextmanager
    def hold(self, rule_id: str) -> Iterator[bool]:
        """Yields whether this process may evaluate the rule now; frees the lock afterwards."""
        if not self.shared:
            yield True
            return
        key = rule_lock(self.store.schema, rule_id)
        try:
            conn = self.store.connect()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot connect to store {self.store.where}: {exc}") from None
        try:
            try:
                got = bool(conn.execute(*key.call("pg_try_advisory_lock")).scalar_one())
                conn.commit()
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"cannot lock rule {rule_id} in store {self.store.where}: {exc}"
                ) from None
            if not got:
                logger.debug("rule %s is busy in another daemon; skipped", rule_id)
                yield False
                return
            try:
                yield True
            finally:
                try:
                    conn.execute(*key.call("pg_advisory_unlock"))
                    conn.commit()
                except SQLAlchemyError as exc:
                    # The session is gone, and its lock with it.
                    raise StoreError(
                        f"cannot unlock rule {rule_id} in store {self.store.where}: {exc}"
                    ) from None
        except BaseException:
            # The lock may still be held: never hand this session back to the pool.
            conn.invalidate()
            raise
        finally:
            conn.close()
