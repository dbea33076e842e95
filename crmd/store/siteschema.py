"""Several sites in one PostgreSQL database: each site's tables live in a schema of its own.

A site names its schema (`store_schema` in site.yaml, or $CRMD_STORE_SCHEMA). Its store maps
every table to that schema, and everything that is shared database-wide must carry the
schema too, so that one site never waits for, or counts, another site's work:

- the advisory locks of crmd.store.sharing and crmd.store.database (rules, event writers,
  rule start, migration, channels, messages being sent): advisory locks belong to the
  database, not to a schema;
- the session names by which `crmd status` finds live daemons
  (crmd.store.connections.application_name).

A store without a schema (the public one) keeps the lock keys crmd always used: daemons of an
older crmd and of this one still take turns on it.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, TextClause, text

# The first key of every lock of the public schema ("crmd" in ASCII), so other
# applications sharing the database do not collide with ours.
NAMESPACE = 0x63726D64
# Rule locks use the next namespace, with the CRC-32 of the rule id as the second key.
RULES_NAMESPACE = NAMESPACE + 1
# Channel rate-limit locks use the one after, with the CRC-32 of the channel name.
CHANNELS_NAMESPACE = NAMESPACE + 2
# Message claim locks use the one after that, with the message id as the second key.
MESSAGES_NAMESPACE = NAMESPACE + 3
# Second keys of the site-wide locks.
EVENTS_KEY = 1
START_KEY = 2
MIGRATE_KEY = 3


def schema_of(conn: Connection) -> str | None:
    """The site schema a connection's statements are mapped to (None: the public one)."""
    mapping: dict[str | None, str] = conn.get_execution_options().get("schema_translate_map") or {}
    return mapping.get(None)


def rule_key(rule_id: str) -> int:
    """A stable signed 32-bit key for a rule id (CRC-32; Python's hash() varies per process)."""
    value = zlib.crc32(rule_id.encode())
    return value - (1 << 32) if value >= 1 << 31 else value


def _key64(label: str) -> int:
    """A stable signed 64-bit key for a label (the first 8 bytes of its BLAKE2b hash)."""
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), signed=True)


@dataclass(frozen=True)
class LockKey:
    """The key of one PostgreSQL advisory lock.

    The public schema keeps its two 32-bit keys (namespace, key). A site schema uses the
    one-number form with a 64-bit hash of "crmd/<schema>/<lock>": PostgreSQL keeps the two
    forms apart, so a site never meets the public schema's locks, and with 64 bits two
    sites' locks meet with a chance of about 1 in 10^19 per pair (32 bits, the CRC-32 of
    "schema/rule", would give 1 in 4 x 10^9 per pair: 20,000 rules in one database
    would have a few percent chance of a pair that waits for each other).
    """

    values: tuple[int, ...]

    def call(self, function: str) -> tuple[TextClause, dict[str, Any]]:
        """`SELECT function(key...)` and its parameters, e.g. for pg_try_advisory_lock."""
        names = [f"k{n}" for n in range(len(self.values))]
        sql = f"SELECT {function}({', '.join(':' + name for name in names)})"
        return text(sql), dict(zip(names, self.values, strict=True))


def site_lock(schema: str | None, key: int) -> LockKey:
    """One of a site's site-wide locks (EVENTS_KEY, START_KEY, MIGRATE_KEY)."""
    if schema is None:
        return LockKey((NAMESPACE, key))
    return LockKey((_key64(f"crmd/{schema}/site/{key}"),))


def rule_lock(schema: str | None, rule_id: str) -> LockKey:
    """The lock under which one daemon at a time evaluates a site's rule."""
    if schema is None:
        return LockKey((RULES_NAMESPACE, rule_key(rule_id)))
    return LockKey((_key64(f"crmd/{schema}/rule/{rule_id}"),))


def channel_lock(schema: str | None, channel: str) -> LockKey:
    """The lock under which one sender at a time counts a channel's sends against its
    rate limit and claims the next message."""
    if schema is None:
        return LockKey((CHANNELS_NAMESPACE, rule_key(channel)))
    return LockKey((_key64(f"crmd/{schema}/channel/{channel}"),))


def message_lock(schema: str | None, message_id: int) -> LockKey:
    """The lock a sender holds on an outbox message from its claim until its outcome is
    recorded: while it is held, the message is being sent, not interrupted."""
    if schema is None:
        # PostgreSQL's two-key form takes 32-bit keys: ids past 2**31 wrap around. Two
        # messages 2**32 apart then share a lock, which only makes one wait a pass.
        key = message_id % (1 << 32)
        return LockKey((MESSAGES_NAMESPACE, key - (1 << 32) if key >= 1 << 31 else key))
    return LockKey((_key64(f"crmd/{schema}/message/{message_id}"),))
