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

A sender holds a session-level advisory lock on each outbox message it sends, taken before
its claim commits and freed once the outcome is recorded (`MessageClaims`). A message left
"sending" whose lock is free was interrupted: its sender died, and its lock with its
connection. One whose lock is held is still being sent, however old its claim looks, and
another daemon's sender leaves it alone.

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
    message_lock,
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
    "MessageClaims",
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


class MessageClaims:
    """The locks of the outbox messages a sender is sending; always granted on SQLite.

    The locks live on one connection of their own, opened by `session` for a pass of the
    sender. Every call is a try, never a wait: a sender that waited here while its claim
    transaction holds the message's row could wait for a sender that waits for that row.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.shared = not store.is_sqlite
        self._conn: Connection | None = None
        self._held: set[int] = set()

    @contextlib.contextmanager
    def session(self) -> Iterator[MessageClaims]:
        """The connection that holds the locks, for one pass; every lock is freed after it."""
        try:
            yield self
        finally:
            self._close()

    def take(self, message_id: int) -> bool:
        """Lock a message: False if another sender holds it (it is sending or settling it)."""
        if not self.shared:
            return True
        got = bool(self._call(message_id, "pg_try_advisory_lock"))
        if got:
            self._held.add(message_id)
        return got

    def release(self, message_id: int) -> None:
        """Free a message's lock once its outcome is committed (or its claim rolled back)."""
        if not self.shared or message_id not in self._held:
            return
        self._held.discard(message_id)
        # On an error the session is closed, and its locks go with it.
        self._call(message_id, "pg_advisory_unlock")

    def release_all(self) -> None:
        """Free every lock this sender holds, by closing their session."""
        self._close()

    def _call(self, message_id: int, function: str) -> object:
        key = message_lock(self.store.schema, message_id)
        try:
            if self._conn is None:
                self._conn = self.store.connect()
            value = self._conn.execute(*key.call(function)).scalar_one()
            self._conn.commit()
            return value
        except SQLAlchemyError as exc:
            self._close()
            action = "unlock" if function == "pg_advisory_unlock" else "lock"
            raise StoreError(
                f"cannot {action} outbox message {message_id} in store {self.store.where}: {exc}"
            ) from None

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        held, self._held = self._held, set()
        if conn is None:
            return
        if held:
            # A lock may still be held: never hand this session back to the pool.
            conn.invalidate()
        conn.close()
