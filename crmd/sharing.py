"""Several daemons on one PostgreSQL store: who evaluates which rule right now.

Each rule's evaluation (all its pages, each page its own transaction) runs under a
PostgreSQL session-level advisory lock keyed by the rule id, taken with `pg_try_advisory_lock`
on a connection of its own. A daemon that does not get it skips the rule for this tick:
another daemon is evaluating it. The lock dies with its connection, so a daemon killed
mid-rule frees the rule as soon as the server notices the connection is gone (at once for
a killed process, whose kernel closes the socket; within the TCP keepalive time set in
`crmd.store.KEEPALIVE_OPTIONS` for a host that vanished). The fires ledger's unique key
stays the last guard: a page repeated after a crash finds its fires done.

Event inserts take a transaction-scoped lock too, so event `seq` values become visible in
order: a rule's event cursor never passes an event still being written by another daemon.

On SQLite none of this applies: one daemon per store, enforced by `crmd.instance`.
"""

from __future__ import annotations

import contextlib
import logging
import zlib
from collections.abc import Iterator

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from crmd.store import Store, StoreError

logger = logging.getLogger(__name__)

# The first key of every crmd advisory lock ("crmd" in ASCII), so other applications
# sharing the database do not collide with ours.
NAMESPACE = 0x63726D64
# Rule locks use the next namespace, with the CRC-32 of the rule id as the second key.
RULES_NAMESPACE = NAMESPACE + 1
# Second keys of the store-wide locks.
EVENTS_KEY = 1
START_KEY = 2
# (3 is the migration lock, crmd.store.MIGRATE_LOCK.)


def rule_key(rule_id: str) -> int:
    """A stable signed 32-bit key for a rule id (CRC-32; Python's hash() varies per process)."""
    value = zlib.crc32(rule_id.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def lock_for_transaction(conn: Connection, key: int) -> None:
    """Wait for a store-wide lock held until this transaction ends (PostgreSQL only)."""
    if is_postgres(conn):
        conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": NAMESPACE, "key": key})


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
        params = {"ns": RULES_NAMESPACE, "key": rule_key(rule_id)}
        try:
            conn = self.store.engine.connect()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot connect to store {self.store.safe_url}: {exc}") from None
        try:
            try:
                got = bool(
                    conn.execute(
                        text("SELECT pg_try_advisory_lock(:ns, :key)"), params
                    ).scalar_one()
                )
                conn.commit()
            except SQLAlchemyError as exc:
                raise StoreError(
                    f"cannot lock rule {rule_id} in store {self.store.safe_url}: {exc}"
                ) from None
            if not got:
                logger.debug("rule %s is busy in another daemon; skipped", rule_id)
                yield False
                return
            try:
                yield True
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:ns, :key)"), params)
                conn.commit()
        except BaseException:
            # The lock may still be held: never hand this session back to the pool.
            conn.invalidate()
            raise
        finally:
            conn.close()
