"""The store: opening, migrating and transactions. Queries live in crmd/store/queries.py.

SQLite (WAL) is the embedded default; any SQLAlchemy URL works (PostgreSQL to scale out).
On PostgreSQL a site may keep its tables in a schema of its own, so that several sites
share one database (crmd.store.siteschema). The sites of one group process (crmd.daemon.group) may
share its sessions too (SharedEngines): each transaction points the session it takes at
its site's schema.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.pool import QueuePool

from crmd.errors import CrmdError
from crmd.site import schema_problem, site_schema
from crmd.store.bulkwrite import json_text
from crmd.store.siteschema import MIGRATE_KEY, site_lock

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


class StoreError(CrmdError):
    """The store cannot be opened, read or written."""


# SQLite checkpoints its WAL after this many pages (4 KB each) and then trims it to this size.
WAL_CHECKPOINT_PAGES = 10_000
WAL_KEEP_BYTES = 8 * 1024 * 1024


def _sqlite_setup(engine: Engine, busy_timeout_ms: int) -> None:
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


def _search_path_setup(engine: Engine, schema: str) -> None:
    """Every session looks up unqualified names in the site's schema (raw SQL included)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        with dbapi_conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{schema}"')
        dbapi_conn.commit()


def _engine_options(url: str, schema: str | None, busy_timeout_ms: int) -> dict[str, Any]:
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
                options = _engine_options(url, None, 0)
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


class Stopped(Exception):
    """Raised by a unit between two batches when the daemon was told to stop.

    One of NOT_THE_RULES: the engine's per-rule and per-fire error handling lets it through.
    """


# Errors that are not one rule's or one fire's trouble: the store's, the machine's, or a stop.
# The engine lets them through (the transaction in flight rolls back); anything else raised
# while evaluating a rule or working out a fire fails that rule or fire alone.
NOT_THE_RULES: tuple[type[BaseException], ...] = (StoreError, SQLAlchemyError, OSError, Stopped)


class Store:
    """A crmd store at a SQLAlchemy URL; on PostgreSQL, optionally in a site's own schema."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        echo: bool = False,
        busy_timeout_ms: int = 10000,
        shared: SharedEngines | None = None,
    ) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.schema = site_schema(schema)
        if self.schema is not None:
            self._check_schema(parsed.get_backend_name())
        if self.is_sqlite:
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        # A site in a schema of its own may take its sessions from a group's shared engine;
        # each connection is then pointed at the schema when taken (connect()).
        self._shares_sessions = shared is not None and self.schema is not None
        try:
            if self._shares_sessions:
                assert shared is not None
                self.engine = shared.engine(url)
            else:
                kwargs = _engine_options(url, self.schema, busy_timeout_ms)
                if self.schema is not None:
                    # Every table of crmd.store.tables (schema None) is the site schema's table.
                    kwargs["execution_options"] = {"schema_translate_map": {None: self.schema}}
                self.engine = create_engine(url, echo=echo, **kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"cannot open store {self.safe_url}: {exc}") from None
        if self.is_sqlite:
            _sqlite_setup(self.engine, busy_timeout_ms)
        if self.schema is not None and not self._shares_sessions:
            _search_path_setup(self.engine, self.schema)

    def _check_schema(self, backend: str) -> None:
        assert self.schema is not None
        if backend != "postgresql":
            where = "its own SQLite file" if self.is_sqlite else "a store of its own"
            raise StoreError(
                f"store_schema {self.schema!r} needs a PostgreSQL store, and {self.safe_url} "
                f"is {backend}: on {backend} each site has {where}; remove store_schema "
                f"(or CRMD_STORE_SCHEMA) or point the site at PostgreSQL"
            )
        problem = schema_problem(self.schema)
        if problem is not None:
            raise StoreError(f"store_schema {self.schema!r} cannot be used: {problem}")

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden, for messages and logs."""
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def where(self) -> str:
        """The URL, and the schema if the site has one, for messages."""
        return self.safe_url if self.schema is None else f"{self.safe_url} (schema {self.schema})"

    @classmethod
    def open(
        cls,
        url: str,
        *,
        schema: str | None = None,
        migrate: bool = True,
        shared: SharedEngines | None = None,
    ) -> Store:
        store = cls(url, schema=schema, shared=shared)
        if migrate:
            try:
                store.migrate()
            except BaseException:
                store.dispose()  # close the session the failed migration used
                raise
        return store

    def _alembic_config(self, connection: Connection) -> Config:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = connection
        cfg.attributes["schema"] = self.schema
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision`, keeping every row (Alembic migrations).

        A site schema that does not exist yet is created first.
        """
        try:
            with self.connect() as conn, conn.begin():
                if not self.is_sqlite:
                    # Daemons started together on one PostgreSQL store migrate one by one.
                    conn.execute(*site_lock(self.schema, MIGRATE_KEY).call("pg_advisory_xact_lock"))
                if self.schema is not None:
                    self._create_schema(conn)
                command.upgrade(self._alembic_config(conn), revision)
        except OperationalError as exc:
            raise StoreError(f"cannot migrate store {self.where}: {exc.orig}") from None

    def _create_schema(self, conn: Connection) -> None:
        exists = conn.execute(
            text("SELECT 1 FROM pg_namespace WHERE nspname = :name"), {"name": self.schema}
        ).first()
        if exists:
            return  # a role without CREATE on the database may use a schema made for it
        try:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        except ProgrammingError as exc:
            raise StoreError(
                f"cannot create schema {self.schema} in store {self.safe_url}: "
                f"{str(exc.orig).strip()}; create it as the database owner "
                f"(CREATE SCHEMA {self.schema} AUTHORIZATION <crmd's role>) and start again"
            ) from None
        logger.info("created schema %s in store %s", self.schema, self.safe_url)

    def revision(self) -> str | None:
        with self.read() as conn:
            opts = {"version_table_schema": self.schema}
            return MigrationContext.configure(conn, opts=opts).get_current_revision()

    def head_revision(self) -> str | None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        return ScriptDirectory.from_config(cfg).get_current_head()

    @contextlib.contextmanager
    def write(self, *, durable: bool = False) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any error.

        `durable`: on disk once committed, even through a power cut (SQLite syncs its WAL at
        that commit; PostgreSQL always does). For what must hold before crmd acts on the
        world outside, such as claiming a message before handing it to a provider.
        """
        try:
            with self._transaction(crmd_durable=durable) as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            # "database is locked", a full disk, a read-only file, the server gone: say so.
            raise StoreError(
                f"cannot write to store {self.where}: {exc.orig}; nothing from this "
                f"operation was saved, try again once the cause is cleared"
            ) from None
        except DataError as exc:
            # PostgreSQL checks column widths (an id longer than 64 characters); SQLite not.
            raise StoreError(
                f"cannot write to store {self.where}: {str(exc.orig).strip()}; nothing "
                f"from this operation was saved, shorten the value and try again"
            ) from None

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (never takes the SQLite write lock)."""
        try:
            with self._transaction(crmd_read_only=True) as conn:
                yield conn
        except (OperationalError, InterfaceError) as exc:
            # The server went away, a file cannot be opened: the store's trouble.
            raise StoreError(
                f"cannot read store {self.where}: {str(exc.orig).strip()}; try again once "
                f"the cause is cleared"
            ) from None

    @contextlib.contextmanager
    def _transaction(self, **options: bool) -> Iterator[Connection]:
        """A transaction on a pooled connection; the options steer how SQLite begins it
        (crmd_read_only, crmd_durable: see _sqlite_setup)."""
        with self.connect() as conn:
            conn = conn.execution_options(**options)
            with conn.begin():
                yield conn

    def connect(self) -> Connection:
        """A connection from the pool, looking at this store's tables."""
        conn = self.engine.connect()
        if not self._shares_sessions:
            return conn
        try:
            # The session may have served another site of the group last.
            info = conn.connection.info
            if info.get("crmd_schema") != self.schema:
                conn.exec_driver_sql(f'SET search_path TO "{self.schema}"')
                conn.commit()
                info["crmd_schema"] = self.schema
        except BaseException:
            conn.close()
            raise
        return conn.execution_options(schema_translate_map={None: self.schema})

    def dispose(self) -> None:
        """Close the idle sessions (not a group's shared ones: the group closes those)."""
        if not self._shares_sessions:
            self.engine.dispose()


class Unit:
    """Where a tick writes: each batch its own transaction, or all rolled back (dry run).

    The engine commits work in batches (`with unit.batch() as conn`). A real unit commits
    each batch; a dry-run unit runs every batch as a savepoint inside one transaction that
    is rolled back at the end, so `plan` runs the very code `tick` runs and writes nothing.
    """

    def __init__(
        self,
        store: Store,
        *,
        dry_run: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.dry_run = dry_run
        # Asked before each batch: the daemon stops between transactions, never inside one.
        self.should_stop = should_stop
        self._outer: Connection | None = None

    def __enter__(self) -> Unit:
        if self.dry_run:
            self._outer = self.store.connect()
            self._outer.begin()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._outer is not None:
            self._outer.rollback()
            self._outer.close()
            self._outer = None

    @contextlib.contextmanager
    def batch(self) -> Iterator[Connection]:
        if self.should_stop is not None and self.should_stop():
            raise Stopped("stopping between transactions")
        if self._outer is None:
            with self.store.write() as conn:
                yield conn
        else:
            with self._outer.begin_nested():
                yield self._outer
