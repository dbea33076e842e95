"""The store: opening, migrating and transactions, and the units of work a tick writes in.

SQLite (WAL) is the embedded default; any SQLAlchemy URL works (PostgreSQL to scale out).
On PostgreSQL a site may keep its tables in a schema of its own, so that several sites
share one database (crmd.store.siteschema). The sites of one group process
(crmd.daemon.group) may share its sessions too (SharedEngines): each transaction points the
session it takes at its site's schema. How each connection is set up is in
crmd.store.connections; the queries are in the store's other modules (crmd.store.queries,
work, ledger, watermarks, heartbeats).

Alembic is imported only by the methods that migrate the store or read its revision, so
a command that opens a store without migrating does not pay for loading it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)

from crmd.errors import CrmdError
from crmd.site import schema_problem, site_schema
from crmd.store.connections import (
    SharedEngines,
    engine_options,
    search_path_setup,
    sqlite_setup,
)
from crmd.store.siteschema import MIGRATE_KEY, site_lock

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions. A store already there needs no migration, and
# opening it then loads no Alembic (a tenth of a second at every command's start).
# tests/test_store_imports.py checks it against Alembic's own head: a new migration moves it.
HEAD_REVISION = "0007"


class StoreError(CrmdError):
    """The store cannot be opened, read or written."""


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
                kwargs = engine_options(url, self.schema, busy_timeout_ms)
                if self.schema is not None:
                    # Every table of crmd.store.tables (schema None) is the site schema's table.
                    kwargs["execution_options"] = {"schema_translate_map": {None: self.schema}}
                self.engine = create_engine(url, echo=echo, **kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise StoreError(f"cannot open store {self.safe_url}: {exc}") from None
        if self.is_sqlite:
            sqlite_setup(self.engine, busy_timeout_ms)
        if self.schema is not None and not self._shares_sessions:
            search_path_setup(self.engine, self.schema)

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

    def _alembic_config(self, connection: Connection | None = None) -> Config:
        """Alembic's settings for this store's migrations (on `connection`, to run them)."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        if connection is not None:
            cfg.attributes["connection"] = connection
            cfg.attributes["schema"] = self.schema
        return cfg

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to `revision`, keeping every row (Alembic migrations).

        A site schema that does not exist yet is created first.
        """
        if revision in ("head", HEAD_REVISION) and self._at_head():
            return
        from alembic import command

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

    def _at_head(self) -> bool:
        """Whether the store's schema is at HEAD_REVISION, read straight from Alembic's
        version table; False when it cannot tell (no table yet, no schema, no file), and
        then Store.migrate asks Alembic."""
        table = "alembic_version" if self.schema is None else f'"{self.schema}".alembic_version'
        try:
            with self.connect() as conn:
                found = conn.execute(text(f"SELECT version_num FROM {table}")).scalars().all()
        except (OperationalError, ProgrammingError):
            return False
        return list(found) == [HEAD_REVISION]

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
        """The revision the store's schema is at (None before its first migration)."""
        from alembic.runtime.migration import MigrationContext

        with self.read() as conn:
            opts = {"version_table_schema": self.schema}
            return MigrationContext.configure(conn, opts=opts).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest revision of crmd's migrations: what migrate() brings the store to."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

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
        (crmd_read_only, crmd_durable: see crmd.store.connections.sqlite_setup)."""
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
