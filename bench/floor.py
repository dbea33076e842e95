"""What SQLite alone needs to store what crmd stores for N deliveries: the floor under crmd.

    python bench/floor.py [--n 100000]

Runs crmd's side of bench/vs_apscheduler.py (N deliveries in, one tick, N callback tasks
out) into a SQLite store, then reads back every row that run wrote (the N delivery events,
then each fire's ledger row, task and `task.created` event) and writes the very same rows
into a new store with the same schema and settings, by the sqlite3 module alone: prepared
statements through `executemany`, the events in one transaction, the fires in pages of
crmd's largest page size, each page one transaction, as the engine commits them. No event
is read, no context built, nothing rendered or converted: what is left is SQLite's own
work (index entries, WAL writes, checkpoints), the least any build storing these rows must
spend.

Then does it again, into a third store, with only the rows a scheduler that keeps a
durable, exactly-once record cannot do without: the delivery events, each fire's ledger row
(its detail left empty) and its task; no `task.created` event. That is the floor under any
build with a ledger and a task per delivery, crmd's design or another.

Prints crmd's end-to-end time and both floors, as JSON. Compare them with what 50x faster
than APScheduler would need (bench/vs_apscheduler.py's APScheduler time / 50).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vs_apscheduler import run_crmd  # noqa: E402  (bench/ is not a package)

from crmd.store.database import Store  # noqa: E402
from crmd.store.pages import PAGE  # noqa: E402


def rows_of(path: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as con:
        cursor = con.execute(sql)
        return [c[0] for c in cursor.description], cursor.fetchall()


def insert(con: sqlite3.Connection, table: str, columns: list[str], rows: list[Any]) -> None:
    marks = ", ".join("?" for _ in columns)
    con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def store_rows(
    target: Path,
    customers: tuple[list[str], list[Any]],
    events: tuple[list[str], list[Any]],
    pages: list[list[tuple[str, list[str], list[Any]]]],
) -> tuple[float, float]:
    """Write the rows into a new store at `target` with crmd's schema and SQLite settings:
    the customers (not timed), the events in one transaction, then each page of
    (table, columns, rows) in a transaction of its own. Returns (events in, total) seconds."""
    Store.open(f"sqlite:///{target}").dispose()  # the same schema, by the same migrations
    con = sqlite3.connect(target, isolation_level=None)
    for pragma in (  # crmd's settings (crmd/store/connections.py)
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "cache_size=-65536",
        "wal_autocheckpoint=10000",
        "journal_size_limit=8388608",
    ):
        con.execute(f"PRAGMA {pragma}")
    con.execute("BEGIN IMMEDIATE")
    insert(con, "customers", *customers)
    con.execute("COMMIT")
    started = perf_counter()
    con.execute("BEGIN IMMEDIATE")
    event_columns, event_rows = events
    for start in range(0, len(event_rows), 5000):
        insert(con, "events", event_columns, event_rows[start : start + 5000])
    con.execute("COMMIT")
    events_in = perf_counter() - started
    for page in pages:
        con.execute("BEGIN IMMEDIATE")
        for table, columns, rows in page:
            insert(con, table, columns, rows)
        con.execute("COMMIT")
    total = perf_counter() - started
    con.close()
    return events_in, total


def floor(n: int, workdir: Path) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    (workdir / "crmd").mkdir()
    crmd = run_crmd(workdir / "crmd", n, now)
    source = workdir / "crmd" / "crmd.db"
    event_columns, deliveries = rows_of(
        source, "SELECT * FROM events WHERE type = 'sale.delivered' ORDER BY seq"
    )
    _, task_events = rows_of(
        source, "SELECT * FROM events WHERE type = 'task.created' ORDER BY seq"
    )
    fire_columns, fire_rows = rows_of(source, "SELECT * FROM fires ORDER BY id")
    task_columns, task_rows = rows_of(source, "SELECT * FROM tasks ORDER BY id")
    customer_columns, customer_rows = rows_of(source, "SELECT * FROM customers")
    if not len(deliveries) == len(fire_rows) == len(task_rows) == len(task_events) == n:
        raise SystemExit("crmd's run did not write one fire, task and task event per delivery")

    page = PAGE
    spans = [(start, start + page) for start in range(0, n, page)]
    events_in, total = store_rows(
        workdir / "floor" / "crmd.db",
        (customer_columns, customer_rows),
        (event_columns, deliveries),
        [
            [
                ("fires", fire_columns, fire_rows[a:b]),
                ("tasks", task_columns, task_rows[a:b]),
                ("events", event_columns, task_events[a:b]),
            ]
            for a, b in spans
        ],
    )
    detail = fire_columns.index("detail")
    bare_fires = [(*row[:detail], "{}", *row[detail + 1 :]) for row in fire_rows]
    _, least = store_rows(
        workdir / "least" / "crmd.db",
        (customer_columns, customer_rows),
        (event_columns, deliveries),
        [
            [("fires", fire_columns, bare_fires[a:b]), ("tasks", task_columns, task_rows[a:b])]
            for a, b in spans
        ],
    )
    return {
        "n": n,
        "page": page,
        "crmd_end_to_end_s": crmd["end_to_end_s"],
        "floor_events_in_s": round(events_in, 2),
        "floor_end_to_end_s": round(total, 2),
        "crmd_over_floor": round(crmd["end_to_end_s"] / total, 1),
        "ledger_and_task_only_s": round(least, 2),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="deliveries")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crmd-floor-") as tmp:
        print(json.dumps(floor(args.n, Path(tmp)), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
