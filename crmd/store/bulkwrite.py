"""Writing many rows at once: each value converted once, the rows sent with executemany.

A tick writes a ledger row, a task and a `task.created` event for every fire, and an import
an event per line. SQLAlchemy's insert of a list of dicts runs its per-row parameter
machinery and every column type's bind processor for each value; at 100k rows that costs
more than the database's own work. Here each column gets one plain conversion, chosen once
per table and dialect and producing what the column type itself would bind (naive UTC
datetimes, JSON text, ISO dates on SQLite). On SQLite the rows go to the driver's
`executemany`, which runs the prepared statement per row in C; on PostgreSQL to COPY,
which spares the server a statement per row (executemany there still binds and executes
each row, and one multi-row INSERT costs psycopg and the server a long parse).

The values are stored exactly as SQLAlchemy stores them, so reads through the tables'
types see no difference. A dialect other than SQLite and PostgreSQL takes SQLAlchemy's
ordinary insert.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import JSON, Connection, Date, Table, func, insert, select, text
from sqlalchemy.exc import DBAPIError

from crmd.store.tables import UTCDateTime

Convert = Callable[[Any], Any]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} given to the store; use aware datetimes")
    return value.astimezone(UTC).replace(tzinfo=None)


def _utc_text(value: datetime | None) -> str | None:
    # SQLite's DATETIME storage format, as SQLAlchemy writes it: naive UTC with microseconds.
    if value is not None and value.tzinfo is UTC:
        # Most times are UTC already (the engine works in UTC): the text without "+00:00".
        return value.isoformat(" ", "microseconds")[:-6]
    naive = _utc(value)
    return None if naive is None else naive.isoformat(" ", "microseconds")


def _date_text(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _json_time(value: Any) -> str:
    """A time inside a JSON value (a fire's actions) as ISO text in UTC."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        # By time and fold: two local times of a repeated hour compare equal but are an
        # hour apart.
        return _utc_iso(value, value.fold)
    raise TypeError(f"{type(value).__name__} {value!r} cannot be stored as JSON")


@lru_cache(maxsize=4096)  # a page of fires shares a few times (09:00, due two days later)
def _utc_iso(value: datetime, fold: int) -> str:
    return value.astimezone(UTC).isoformat()


def json_text(value: Any) -> str:
    """A JSON column's text; aware times in it become ISO text in UTC. The store's engine
    serialises JSON with this too (crmd.store.connections), so every way of writing agrees."""
    # SQLAlchemy's JSON type stores None as the JSON null, not SQL NULL (none_as_null=False).
    return _ENCODER.encode(value)


# json.dumps with any argument builds a new encoder per call; this one is built once.
_ENCODER = json.JSONEncoder(default=_json_time)


# Conversions of hashable values (times, dates), memoised per batch by insert_many.
_MEMO: frozenset[Convert] = frozenset({_utc, _utc_text, _date_text})
_MISSING = object()


@cache
def _converters(
    table: Table, columns: tuple[str, ...], on_sqlite: bool
) -> tuple[Convert | None, ...]:
    out: list[Convert | None] = []
    for name in columns:
        kind = table.c[name].type
        if isinstance(kind, UTCDateTime):
            out.append(_utc_text if on_sqlite else _utc)
        elif isinstance(kind, JSON):
            out.append(json_text)
        elif isinstance(kind, Date) and on_sqlite:
            out.append(_date_text)
        else:
            out.append(None)  # strings, numbers, booleans: the drivers take them as they are
    return tuple(out)


def _statement(conn: Connection, table: Table, columns: Sequence[str]) -> str:
    prep = conn.dialect.identifier_preparer
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(prep.quote(c) for c in columns)
    markers = ", ".join(marker for _ in columns)
    return f"INSERT INTO {prep.format_table(table)} ({names}) VALUES ({markers})"


def _fast(conn: Connection) -> bool:
    """Whether this connection's driver takes plain tuples through executemany here."""
    return conn.dialect.name in ("sqlite", "postgresql") and conn.dialect.paramstyle in (
        "qmark",
        "format",
        "pyformat",
    )


def insert_many(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    ids: Sequence[int] | None = None,
) -> None:
    """Insert rows that all name the same columns, in order, in the caller's transaction;
    `ids`, if given, are the rows' `id` values, in the same order.

    A column the rows leave out gets its server default or NULL, never a Python-side
    default of the table: callers give every value.
    """
    if not rows:
        return
    if not _fast(conn):
        if ids is not None:
            rows = [{"id": i, **row} for i, row in zip(ids, rows, strict=True)]
        conn.execute(insert(table), list(rows))
        return
    columns = tuple(rows[0])
    if ids is not None:
        columns = ("id", *columns)
        if len(ids) != len(rows):
            raise ValueError(f"{len(ids)} ids for {len(rows)} rows")
    convert = _converters(table, columns, conn.dialect.name == "sqlite")
    converted = [(i, c) for i, c in enumerate(convert) if c is not None and c not in _MEMO]
    # Times and dates repeat across a batch (a page of fires at 09:00, one `now`): each
    # distinct value is converted once. Lookups cost a small part of a conversion.
    memoised: list[tuple[int, Convert, dict[tuple[Any, int], Any]]] = [
        (i, c, {}) for i, c in enumerate(convert) if c is not None and c in _MEMO
    ]
    params: list[tuple[Any, ...]] = []
    named = columns[1:] if ids is not None else columns
    for n, row in enumerate(rows):
        values = [row[c] for c in named]  # a KeyError names a column a row left out
        if ids is not None:
            values.insert(0, ids[n])
        for i, c in converted:
            values[i] = c(values[i])
        for i, c, seen in memoised:
            value = values[i]
            # With the fold: two times of a repeated hour compare equal but are an hour apart.
            key = (value, getattr(value, "fold", 0))
            done = seen.get(key, _MISSING)
            if done is _MISSING:
                done = seen[key] = c(value)
            values[i] = done
        params.append(tuple(values))
    if conn.dialect.name == "postgresql":
        _copy(conn, table, columns, params)
    else:
        conn.exec_driver_sql(_statement(conn, table, columns), params)


def _copy(
    conn: Connection, table: Table, columns: Sequence[str], params: Sequence[tuple[Any, ...]]
) -> None:
    """PostgreSQL's COPY through psycopg, in the connection's transaction.

    A failure (a value too wide for its column, a duplicate key) is raised as SQLAlchemy
    raises it for any statement, so the store's messages stay the same.
    """
    prep = conn.dialect.identifier_preparer
    names = ", ".join(prep.quote(c) for c in columns)
    statement = f"COPY {prep.format_table(table)} ({names}) FROM STDIN"
    dbapi = conn.dialect.loaded_dbapi
    driver: Any = conn.connection.dbapi_connection  # a psycopg Connection
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in params:
                copy.write_row(row)
    except dbapi.Error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi.Error, dialect=conn.dialect) from exc


def allocate_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """n new values of a table's integer `id`, increasing, for rows this transaction inserts.

    PostgreSQL draws them from the column's sequence. SQLite gives a new row max(id) + 1;
    a writer there holds the database's write lock from its BEGIN IMMEDIATE
    (crmd.store.connections), so nobody else can take the same values before this
    transaction commits.
    """
    if n <= 0:
        return []
    if conn.dialect.name == "postgresql":
        ids = conn.execute(
            text(
                "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"
            ),
            {"table": table.name, "n": n},
        ).scalars()
        return sorted(int(i) for i in ids)
    top = int(conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one())
    return list(range(top + 1, top + n + 1))


def fast_ids(conn: Connection) -> bool:
    """Whether `allocate_ids` then `insert_many` serve this store (else insert RETURNING)."""
    return _fast(conn)


def insert_with_ids(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert rows into a table with an integer `id` and return their new ids in the rows'
    order (allocated then written with insert_many where that serves, else RETURNING)."""
    if not rows:
        return []
    if not fast_ids(conn):
        result = conn.execute(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), list(rows)
        )
        return [r.id for r in result]
    ids = allocate_ids(conn, table, len(rows))
    insert_many(conn, table, rows, ids)
    return ids
