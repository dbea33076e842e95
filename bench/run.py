"""Benchmarks for crmd: intake rate, a tick with 10,000 fires, tick cost versus store size,
the outbox sender's rate.

    python bench/run.py [--quick] [--store-url URL] [--import-events N] [--out FILE]

Builds synthetic SQLite stores (real files, via Store.open) in a temporary directory, or
with --store-url postgresql+psycopg://... new databases on that PostgreSQL server (dropped
afterwards), and prints one JSON object of figures. No figure is asserted against a time:
the checks here are about correctness (the right number of fires and tasks), and fail loudly.
See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import resource
import sqlite3
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Column, MetaData, Table, create_engine, func, insert, select, text
from sqlalchemy.engine import make_url

from crmd.calendar.offsets import parse_offset
from crmd.channels.sender import Sender
from crmd.channels.settings import load_channels
from crmd.cli.fireview import LinesByTime, fire_line
from crmd.engine.evaluation import Engine
from crmd.engine.report import TickReport
from crmd.intake.records import NewEvent, record_events, upsert_customers
from crmd.rules.rule import Due, EventTrigger, Rule, RuleSet, TaskAction
from crmd.rules.templates import Template
from crmd.site import Site
from crmd.store.database import Store, Unit
from crmd.store.tables import customers, events, outbox, tasks

SALES_CALLBACK = Rule(
    id="sales-callback",
    trigger=EventTrigger(types=("sale.delivered",), after=parse_offset("3 days"), at=time(9)),
    actions=(
        TaskAction(
            role="sales_callback",
            title=Template("销售回访 {{ customer.name }}"),
            due=Due(after=parse_offset("2 days")),
        ),
    ),
)
SERVICE_CALLBACK = Rule(
    id="service-callback",
    trigger=EventTrigger(
        types=("service.completed",), after=parse_offset("3 working days"), at=time(9)
    ),
    actions=(
        TaskAction(
            role="service_callback",
            title=Template("售后回访 {{ customer.name }}"),
            due=Due(after=parse_offset("1 working day")),
        ),
    ),
)

# History lies in years the China working calendar has published (the service rule counts
# working days); the measured windows are in March 2026, which has no public holiday.
HISTORY_START = date(2021, 1, 4)
HISTORY_END = date(2026, 1, 31)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静强磊军洋勇艳杰娟涛明"
CHUNK = 50_000


# ---------------------------------------------------------------- building stores


# A PostgreSQL server URL (--store-url): each store is a new database there.
SERVER_URL: str | None = None
_DATABASES: list[str] = []


def open_store(workdir: Path, name: str) -> Store:
    if SERVER_URL is None:
        return Store.open(f"sqlite:///{workdir / name}.db")
    database = f"crmd_bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    _DATABASES.append(database)
    return Store.open(make_url(SERVER_URL).set(database=database).render_as_string(False))


def drop_databases() -> None:
    """Drop the PostgreSQL databases this run made."""
    if SERVER_URL is None or not _DATABASES:
        return
    admin = create_engine(SERVER_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for database in _DATABASES:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
    admin.dispose()


def customer_records(n: int, rng: random.Random) -> list[dict[str, Any]]:
    """n customers C0000000.. with the fields upsert_customers takes."""
    return [
        {
            "id": f"C{i:07d}",
            "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
            "phone": f"13{rng.randrange(10**9):09d}",
            "email": f"c{i}@example.com",
            "birthday": date(1960 + rng.randrange(40), rng.randrange(1, 13), rng.randrange(1, 29)),
            "member": i % 3 == 0,
            "opt_out": False,
        }
        for i in range(n)
    ]


def customer_rows(records: Iterable[dict[str, Any]], now: datetime) -> Iterator[dict[str, Any]]:
    """Customer records as rows of the customers table, for a bulk insert."""
    for r in records:
        md = r["birthday"].month * 100 + r["birthday"].day
        yield {**r, "birthday_md": md, "attributes": {}, "created_at": now, "updated_at": now}


def bulk_insert(store: Store, table: Table, rows: Iterator[dict[str, Any]]) -> int:
    """Insert rows with SQLAlchemy Core, CHUNK rows per statement, a few per transaction.

    The rows go through the columns' own bind processors (so they are stored exactly as the
    engine would store them) into a copy of the table without types, which skips
    SQLAlchemy's per-row parameter handling: several times faster for a million rows.
    """
    dialect = store.engine.dialect
    processors = {
        c.name: c.type.dialect_impl(dialect).bind_processor(dialect) or _same for c in table.columns
    }
    untyped = Table(table.name, MetaData(), *(Column(c.name) for c in table.columns))
    statement = insert(untyped)
    count = 0
    done = False
    while not done:
        with store.write() as conn:
            for _ in range(4):
                chunk = [
                    {name: processors[name](value) for name, value in row.items()}
                    for _, row in zip(range(CHUNK), rows, strict=False)
                ]
                if chunk:
                    conn.execute(statement, chunk)
                    count += len(chunk)
                if len(chunk) < CHUNK:
                    done = True
                    break
    return count


def _same(value: Any) -> Any:
    return value


def local_at(day: date, rng: random.Random, tz: ZoneInfo) -> datetime:
    """A moment in opening hours (09:00-18:00) on `day`, in UTC."""
    minutes = rng.randrange(9 * 60, 18 * 60)
    return datetime.combine(day, time(minutes // 60, minutes % 60), tz).astimezone(UTC)


def history_rows(n_customers: int, rng: random.Random, tz: ZoneInfo) -> Iterator[dict[str, Any]]:
    """Five events per customer: a delivery, then four service visits, in time order.

    All between HISTORY_START and HISTORY_END; seq follows time, as imports over the years
    would have it.
    """
    span = (HISTORY_END - HISTORY_START).days
    facts: list[tuple[datetime, str, int]] = []
    for i in range(n_customers):
        sold = rng.randrange(span - 30)
        facts.append((local_at(HISTORY_START + timedelta(sold), rng, tz), "sale.delivered", i))
        for visit in sorted(rng.randrange(sold + 1, span + 1) for _ in range(4)):
            day = HISTORY_START + timedelta(visit)
            facts.append((local_at(day, rng, tz), "service.completed", i))
    facts.sort()
    for n, (at, kind, i) in enumerate(facts):
        yield {
            "id": f"h{n:08d}",
            "type": kind,
            "at": at,
            "customer_id": f"C{i:07d}",
            "vehicle_id": None,
            "task_id": None,
            "data": {},
            "recorded_at": at,
        }


def count_rows(store: Store, table: Any, *where: Any) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def tick(store: Store, engine: Engine, now: datetime) -> tuple[TickReport, float]:
    """One tick at `now`; returns its report and how long it took (seconds)."""
    with Unit(store) as unit:
        started = perf_counter()
        report = engine.tick(unit, now)
        elapsed = perf_counter() - started
    if report.errors:
        raise SystemExit(f"tick at {now.isoformat()} had errors: {report.errors}")
    return report, elapsed


def fired(report: TickReport, rule_id: str | None = None) -> int:
    if rule_id is None:
        return report.count("fired")
    tally = report.rules.get(rule_id)
    return tally.statuses.get("fired", 0) if tally else 0


# ---------------------------------------------------------------- 1. intake


def bench_import(workdir: Path, site: Site, n_events: int) -> dict[str, Any]:
    """Record n_events through `crmd import` (crmd.intake.importer), or record_events without it."""
    rng = random.Random(1)
    tz = site.timezone
    now = datetime(2026, 3, 1, 12, tzinfo=tz)
    people = customer_records(max(n_events // 10, 1), rng)
    new = []
    for n in range(n_events):
        kind = "sale.delivered" if n % 5 == 0 else "service.completed"
        at = local_at(date(2025, 1, 1) + timedelta(n * 365 // n_events), rng, tz)
        new.append(NewEvent(kind, at, people[n % len(people)]["id"], None, {}, f"imp{n:08d}"))
    store = open_store(workdir, "import")
    try:
        from crmd.intake.importer import import_csv
    except ImportError:  # not written yet: measure the intake path it will use
        rate = _import_via_record_events(store, site, people, new, now)
        figure, path = (
            "record_events_per_s",
            "crmd.intake.records.record_events (no crmd.intake.importer)",
        )
    else:
        rate = _import_via_csv(import_csv, workdir, store, site, people, new, now)
        figure, path = "import_events_per_s", "crmd.intake.importer.import_csv"
    stored = count_rows(store, events)
    store.dispose()
    if stored != n_events:
        raise SystemExit(f"import: {stored} events in the store, expected {n_events}")
    return {figure: round(rate), "import_path": path, "import_events": n_events}


def _import_via_csv(
    import_csv: Callable[..., Any],
    workdir: Path,
    store: Store,
    site: Site,
    people: Sequence[dict[str, Any]],
    new: Sequence[NewEvent],
    now: datetime,
) -> float:
    people_csv, events_csv = workdir / "customers.csv", workdir / "events.csv"
    with people_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(people[0]))
        writer.writeheader()
        writer.writerows(people)
    with events_csv.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "type", "at", "customer_id", "vehicle_id"])
        for e in new:
            at = e.at.astimezone(site.timezone).isoformat()
            out.writerow([e.id, e.type, at, e.customer_id or "", e.vehicle_id or ""])
    import_csv(store, site, people_csv, "customers", now)
    started = perf_counter()
    import_csv(store, site, events_csv, "events", now)
    return len(new) / (perf_counter() - started)


def _import_via_record_events(
    store: Store,
    site: Site,
    people: Sequence[dict[str, Any]],
    new: Sequence[NewEvent],
    now: datetime,
) -> float:
    with store.write() as conn:
        upsert_customers(conn, people, now)
    started = perf_counter()
    with store.write() as conn:
        for start in range(0, len(new), 5000):
            record_events(conn, new[start : start + 5000], site.event_types, now)
    return len(new) / (perf_counter() - started)


# ---------------------------------------------------------------- 2. a tick with 10k fires


def bench_10k_callbacks(workdir: Path, site: Site) -> dict[str, Any]:
    """One tick that fires 10,000 sales callbacks (deliveries on 2 and 3 March 2026)."""
    n = 10_000
    tz = site.timezone
    rng = random.Random(2)
    store = open_store(workdir, "callbacks")
    engine = Engine(site, RuleSet((SALES_CALLBACK,)))
    start = datetime(2026, 3, 2, 0, 0, tzinfo=tz)
    bulk_insert(store, customers, customer_rows(customer_records(n, rng), start))
    tick(store, engine, start)  # the rule is first seen here: its watermark is `start`
    deliveries = [
        NewEvent(
            "sale.delivered",
            local_at(date(2026, 3, 2 + i % 2), rng, tz),
            f"C{i:07d}",
            id=f"d{i:06d}",
        )
        for i in range(n)
    ]
    with store.write() as conn:
        record_events(conn, deliveries, site.event_types, start)
    # Fires at 5 and 6 March 09:00; the tasks fall due two days later, so none is overdue.
    report, elapsed = tick(store, engine, datetime(2026, 3, 6, 9, 5, tzinfo=tz))
    made = count_rows(store, tasks, tasks.c.rule_id == SALES_CALLBACK.id)
    if fired(report, SALES_CALLBACK.id) != n or made != n:
        raise SystemExit(
            f"10k callbacks: {fired(report, SALES_CALLBACK.id)} fired and {made} tasks, "
            f"expected {n} of each"
        )
    # The next tick, a minute later, has nothing to do; what it costs is the daemon's
    # steady-state price of having just had 10k deliveries.
    idle, idle_elapsed = tick(store, engine, datetime(2026, 3, 6, 9, 6, tzinfo=tz))
    store.dispose()
    if idle.count():
        raise SystemExit(f"the tick after the 10k callbacks fired {idle.count()} more")
    return {
        "tick_10k_callbacks_s": round(elapsed, 3),
        "tick_10k_rounds": report.rounds,
        "tick_after_10k_idle_s": round(idle_elapsed, 3),
    }


# ---------------------------------------------------------------- 3. tick cost vs store size


def build_history_store(workdir: Path, name: str, site: Site, n_events: int) -> Store:
    """A store of n_events events: a fifth of that many customers with five events each."""
    rng = random.Random(3)
    n_customers = max(n_events // 5, 1000)
    built = datetime(2026, 2, 1, tzinfo=UTC)
    store = open_store(workdir, name)
    bulk_insert(store, customers, customer_rows(customer_records(n_customers, rng), built))
    bulk_insert(store, events, history_rows(n_customers, rng, site.timezone))
    return store


# The measured windows: three Mondays, a week apart, so each one's warm-up tick at 08:00 has
# already marked the previous week's tasks overdue and the measured tick does only the fires.
# A single tick on a shared machine is noisy; the figure is the median of the three.
DUE_DAYS = (date(2026, 3, 9), date(2026, 3, 16), date(2026, 3, 23))


def due_events(site: Site, n: int, day: date) -> list[NewEvent]:
    """n events that all fall due on `day` at 09:00, half for each rule.

    Deliveries 3 days before; services 3 working days before (a Monday's are the Wednesday
    before). The customers are existing ones, as repeat business is.
    """
    rng = random.Random(day.toordinal())
    tz = site.timezone
    sold, serviced = day - timedelta(days=3), site.calendar.add_working_days(day, -3)
    return [
        NewEvent(
            "sale.delivered" if i % 2 else "service.completed",
            local_at(sold if i % 2 else serviced, rng, tz),
            f"C{i:07d}",
            id=f"due-{day.isoformat()}-{i}",
        )
        for i in range(n)
    ]


def time_due_ticks(store: Store, site: Site, n_due: int) -> tuple[list[float], list[float]]:
    """For each day of DUE_DAYS: a timed ordinary tick with nothing due (08:00), n_due
    events falling due, the timed tick that fires them (09:30). Returns both lists of times.
    """
    tz = site.timezone
    engine = Engine(site, RuleSet((SALES_CALLBACK, SERVICE_CALLBACK)))
    # The rules are first seen the evening before the first window.
    tick(store, engine, datetime.combine(DUE_DAYS[0] - timedelta(days=1), time(20), tz))
    idle, elapsed = [], []
    for day in DUE_DAYS:
        warm = datetime.combine(day, time(8), tz)
        report, seconds = tick(store, engine, warm)  # an ordinary tick with nothing due
        if fired(report):
            raise SystemExit(f"the 08:00 tick on {day} fired {fired(report)}, expected none")
        idle.append(seconds)
        with store.write() as conn:
            record_events(conn, due_events(site, n_due, day), site.event_types, warm)
        report, seconds = tick(store, engine, datetime.combine(day, time(9, 30), tz))
        if fired(report) != n_due:
            raise SystemExit(f"due tick on {day}: {fired(report)} fired, expected {n_due}")
        elapsed.append(seconds)
    return idle, elapsed


# The month `plan` looks at: the last month of the history, a month of ordinary business.
PLAN_MONTH = (date(2025, 12, 1), date(2026, 1, 1))


def time_plan_month(store: Store, site: Site) -> tuple[float, int]:
    """`crmd plan` over PLAN_MONTH (a dry run: rolled back), its fires' lines made, held and
    read back in time order as the command lists them (not printed); returns seconds and
    fires."""
    tz = site.timezone
    engine = Engine(site, RuleSet((SALES_CALLBACK, SERVICE_CALLBACK)))
    start, end = (datetime.combine(d, time(0), tz) for d in PLAN_MONTH)
    before = count_rows(store, tasks)
    lines = LinesByTime()
    try:
        with Unit(store, dry_run=True) as unit:
            started = perf_counter()
            report = engine.tick(
                unit,
                end,
                window_start=start,
                on_fire=lambda f: lines.add(f.fire_at, fire_line(f, site)),
            )
            listed = sum(1 for _ in lines)
            seconds = perf_counter() - started
    finally:
        lines.close()
    if report.errors or count_rows(store, tasks) != before or listed != report.count():
        raise SystemExit(f"plan over a month: errors {report.errors} or it wrote tasks")
    return seconds, fired(report)


def bench_store_size(workdir: Path, site: Site, large: int) -> dict[str, Any]:
    small, n_due = 10_000, 1_000
    figures: dict[str, Any] = {}
    for label, size in (("small", small), ("large", large)):
        started = perf_counter()
        store = build_history_store(workdir, f"history_{label}", site, size)
        figures[f"build_{label}_store_s"] = round(perf_counter() - started, 1)
        figures[f"events_{label}"] = count_rows(store, events)
        if label == "large":
            seconds, planned = time_plan_month(store, site)
            figures["plan_month_large_store_s"] = round(seconds, 2)
            figures["plan_month_fires"] = planned
        idle, runs = time_due_ticks(store, site, n_due)
        figures[f"tick_idle_{label}_store_s"] = round(statistics.median(idle), 3)
        figures[f"tick_due_{label}_store_s"] = round(statistics.median(runs), 3)
        figures[f"tick_due_{label}_store_runs_s"] = [round(r, 3) for r in runs]
        store.dispose()
    figures["due_per_tick"] = n_due
    figures["ratio"] = round(
        figures["tick_due_large_store_s"] / figures["tick_due_small_store_s"], 2
    )
    return figures


# ---------------------------------------------------------------- main


def bench_sender(workdir: Path, n: int) -> dict[str, Any]:
    """One sender pass over `n` due messages through the `log` channel: the store's cost of
    claim, send and mark (two write transactions per message), without a provider."""
    root = workdir / "sender-site"
    (root / "channels").mkdir(parents=True)
    (root / "channels" / "sms.yaml").write_text("type: log\n", encoding="utf-8")
    site = Site(root=root)
    store = open_store(workdir, "sender")
    now = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
    bulk_insert(
        store,
        outbox,
        (
            {
                "fire_id": i,
                "rule_id": "bench",
                "channel": "sms",
                "customer_id": None,
                "recipient": f"138{i:08d}",
                "subject": "",
                "body": "您好,这是一条测试短信",
                "status": "queued",
                "not_before": now,
                "next_attempt_at": now,
                "to_customer": False,
                "attempts": 0,
                "created_at": now,
            }
            for i in range(n)
        ),
    )
    sender = Sender(site, store, load_channels(site, {}), batch=n)
    started = perf_counter()
    report = sender.run_once(now)
    elapsed = perf_counter() - started
    if report.sent != n or count_rows(store, outbox, outbox.c.status == "sent") != n:
        raise SystemExit(f"sender bench: {report}, expected {n} sent")
    store.dispose()
    return {"sender_messages": n, "sender_messages_per_s": round(n / elapsed)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    parser.add_argument(
        "--store-url", help="a PostgreSQL server URL: build the stores there, not in SQLite"
    )
    parser.add_argument(
        "--import-events", type=int, help="events to import (default 200k, 20k with --quick)"
    )
    args = parser.parse_args(argv)
    global SERVER_URL
    SERVER_URL = args.store_url
    started = perf_counter()
    figures: dict[str, Any] = {
        "quick": args.quick,
        "python": platform.python_version(),
        "store": make_url(args.store_url).get_backend_name() if args.store_url else "sqlite",
        "sqlite": sqlite3.sqlite_version,
    }
    n_import = args.import_events or (20_000 if args.quick else 200_000)
    with tempfile.TemporaryDirectory(prefix="crmd-bench-") as tmp:
        workdir = Path(tmp)
        site = Site(root=workdir)
        try:
            figures.update(bench_import(workdir, site, n_import))
            figures.update(bench_10k_callbacks(workdir, site))
            figures.update(bench_store_size(workdir, site, 100_000 if args.quick else 1_000_000))
            figures.update(bench_sender(workdir, 500 if args.quick else 5_000))
        finally:
            drop_databases()
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    figures["total_s"] = round(perf_counter() - started, 1)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
