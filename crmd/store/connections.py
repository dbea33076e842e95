"""How the store's connections are made: SQLite's settings and how it begins a transaction,
PostgreSQL's keepalive, session names and search path, and the pools a group process shares.

crmd.store.database.Store builds its SQLAlchemy engine with these; a site in a schema of
its own has every session look there first.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import QueuePool

from crmd.store.bulkwrite import json_text

# SQLite checkpoints its WAL after this many pages (4 KB each) and then trims it to this size.
WAL_CHECKPOINT_PAGES = 10_000
WAL_KEEP_BYTES = 8 * 1024 * 1024


def sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL, foreign keys, a busy timeout, and transactions we control (savepoints work)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, record: Any) -> None:
        # Take transaction control from the sqlite3 module so BEGIN and SAVEPOINT are ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        record.info["crmd_synchronous"] = "NORMAL"
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        # 64 MB of page cache (the default is 2 MB): big imports and ticks touch indexes
        # spread over more pages than that. SQLite allocates it only as pages are used.
        cur.execute("PRAGMA cache_size=-65536")
        # Copy the WAL back into the database every WAL_CHECKPOINT_PAGES pages instead of
        # SQLite's 1,000 (about 4 MB). A tick's page of fires dirties index pages all
        # over the customer-led indexes, more than 1,000 of them, so with the default nearly
        # every commit paid a checkpoint (a copy and an fsync); now one checkpoint serves
        # several commits and copies a page dirtied by each of them once. Crash safety is
        # unchanged in kind: every transaction is whole or absent after a crash, and a process
        # crash loses nothing committed. With synchronous=NORMAL a power cut may undo the
        # transactions not yet synced, and a checkpoint syncs the WAL: that window grows from
        # about 4 MB of writes to about 40 MB (the OS writes dirty pages out within seconds
        # anyway). An undone page of fires is done again by the next tick, as after a crash.
        # The WAL file grows to about that size while busy; journal_size_limit cuts it back
        # to WAL_KEEP_BYTES after a checkpoint, so an idle store does not keep 40 MB of WAL.
        cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cur.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        # A durable transaction is on disk when it commits (synchronous=FULL syncs the WAL at
        # each commit); others may be undone by a power cut since the last checkpoint
        # (NORMAL), which a crash-safe redo covers. The level cannot change inside a
        # transaction, so it is set here, before BEGIN, when it differs.
        level = "FULL" if options.get("crmd_durable") else "NORMAL"
        info = conn.connection.info
        if info.get("crmd_synchronous") != level:
            conn.exec_driver_sql(f"PRAGMA synchronous={level}")
            info["crmd_synchronous"] = level
        # Writers take the write lock up front: no deadlock upgrading a read lock later.
        mode = "DEFERRED" if options.get("crmd_read_only") else "IMMEDIATE"
        conn.exec_driver_sql(f"BEGIN {mode}")


# Server-side TCP keepalive for PostgreSQL connections: a daemon whose host vanished (power,
# network) has its connection, its transaction and its advisory locks dropped after about
# idle + interval * count = 10 + 5 * 3 = 25 seconds (crmd.store.sharing).
KEEPALIVE_OPTIONS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
)


def application_name(
    host: str | None = None, pid: int | None = None, schema: str | None = None
) -> str:
    """How this process's PostgreSQL sessions are named; `crmd status` finds live daemons
    by it (the server keeps 63 bytes).

    `crmd PID HOST` in the public schema, `crmd PID SCHEMA HOST` in a site's schema, so the
    daemons of one site are told from those of another on the same host.
    """
    host = socket.gethostname() if host is None else host
    pid = os.getpid() if pid is None else pid
    site = "" if schema is None else f" {schema}"
    return f"crmd {pid}{site} {host}".encode()[:63].decode(errors="ignore")


def search_path_setup(engine: Engine, schema: str) -> None:
    """Every session looks up unqualified names in the site's schema (raw SQL included)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
        dbapi_conn.commit()


def engine_options(url: str, schema: str | None, busy_timeout_ms: int) -> dict[str, Any]:
    """create_engine's options for a store at `url` (in `schema`, if a site has one)."""
    parsed = make_url(url)
    options: dict[str, Any] = {"json_serializer": json_text}
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"timeout": busy_timeout_ms / 1000}
        return options
    options["pool_pre_ping"] = True
    if parsed.get_backend_name() == "postgresql":
        connect: dict[str, str] = {}
        if "options" not in parsed.query:
            connect["options"] = KEEPALIVE_OPTIONS
        if "application_name" not in parsed.query:
            connect["application_name"] = application_name(schema=schema)
        options["connect_args"] = connect
    return options


class SharedEngines:
    """One engine (one pool of sessions) per PostgreSQL URL for the sites of a group process.

    With an engine each, every site keeps its idle sessions (two with the shipped rules),
    so a few hundred sites would want more sessions than PostgreSQL's default
    max_connections (100). Sharing, the group holds the sessions of the sites at work at
    one time (`workers` at most, each using a transaction's session and a rule lock's),
    keeps `keep` of them open between passes, and opens at most `most` at once. Sessions
    are named after the process alone (`crmd PID HOST`): `crmd status` accepts that name
    for every site of the group.
    """

    def __init__(self, keep: int, most: int) -> None:
        self.keep = keep
        self.most = most
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def engine(self, url: str) -> Engine:
        with self._lock:
            engine = self._engines.get(url)
            if engine is None:
                options = engine_options(url, None, 0)
                options.update(pool_size=self.keep, max_overflow=self.most - self.keep)
                engine = self._engines[url] = create_engine(url, **options)
            return engine

    def sessions_kept(self) -> int:
        """Sessions open and idle in the pools, over every URL."""
        with self._lock:
            pools = [e.pool for e in self._engines.values()]
        return sum(p.checkedin() for p in pools if isinstance(p, QueuePool))

    def dispose(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.dispose()
            self._engines.clear()
