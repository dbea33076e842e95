"""crmd against the scheduler a developer would reach for: APScheduler 3.x, on the same work.

    python bench/vs_apscheduler.py [--n 10000 --n 100000] [--limit SECONDS] [--out FILE]

The work: N car deliveries come in; each needs a sales-callback task three days later at
09:00 (due two days after that), titled with the customer's name. Both builds start from the
same deliveries and the same customers table (filled before the clock starts), in a SQLite
file, and end when N task rows are in the store. Each build runs in its own process, so its
peak memory (ru_maxrss) is its own.

- crmd: the deliveries are recorded with `record_events` (5,000 per statement, one
  transaction), then one `tick` at the first instant all callbacks are due fires the
  `sales-callback` rule; the run checks N fires and N tasks.
- APScheduler: a BackgroundScheduler with a SQLAlchemyJobStore on a SQLite file (WAL, as
  crmd's) and the default thread pool. Each delivery adds one persistent `date` job (the
  job store writes it at once, as an application would); each job, when it runs, reads the
  customer and writes the task row in its own transaction. APScheduler reads the wall
  clock, so the deliveries are placed in the past: every callback time lies six or seven
  days ago, and `misfire_grace_time=None` makes the scheduler run a job however
  late it is, as a restarted application would. The scheduler is started paused while the
  jobs are added, then resumed; the run ends when the N-th job has written its task.

A build that is not done after --limit seconds is stopped; its figure is then extrapolated
linearly from the tasks written so far and labelled `extrapolated`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import threading
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
)

TZ = ZoneInfo("Asia/Shanghai")
HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------- the shared work


def deliveries(n: int, now: datetime) -> list[tuple[str, str, datetime]]:
    """n (delivery id, customer id, time) with every callback (3 days later, 09:00) past.

    Deliveries fall in opening hours on the two days ten and nine days before `now`, so
    crmd's one tick at the last callback finds no task past its due time (nothing overdue:
    the same work as the APScheduler jobs, no more).
    """
    rng = random.Random(7)
    first = (now - timedelta(days=10)).astimezone(TZ).date()
    out = []
    for i in range(n):
        day = first + timedelta(days=i % 2)
        minutes = rng.randrange(9 * 60, 18 * 60)
        at = datetime.combine(day, time(minutes // 60, minutes % 60), TZ).astimezone(UTC)
        out.append((f"d{i:07d}", f"C{i:07d}", at))
    return out


def callback_time(delivered: datetime) -> datetime:
    """The sales callback: three days after the delivery, at 09:00 local."""
    day = delivered.astimezone(TZ).date() + timedelta(days=3)
    return datetime.combine(day, time(9), TZ).astimezone(UTC)


def names(n: int) -> list[tuple[str, str]]:
    rng = random.Random(1)
    surnames, given = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗", "伟芳娜敏静强磊军洋勇艳杰娟涛明"
    return [
        (f"C{i:07d}", rng.choice(surnames) + rng.choice(given) + rng.choice(given))
        for i in range(n)
    ]


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---------------------------------------------------------------- crmd


def run_crmd(workdir: Path, n: int, now: datetime) -> dict[str, Any]:
    sys.path.insert(0, str(HERE))
    from run import SALES_CALLBACK, bulk_insert, customer_rows  # bench/run.py

    from crmd.engine.evaluation import Engine as CrmdEngine
    from crmd.intake.records import NewEvent, record_events
    from crmd.rules.rule import RuleSet
    from crmd.site import Site
    from crmd.store.database import Store, Unit
    from crmd.store.tables import customers, tasks

    site = Site(root=workdir)
    store = Store.open(f"sqlite:///{workdir / 'crmd.db'}")
    # Streamed into the store, as the deliveries below, so the peak memory is crmd's own.
    records = (
        {"id": cid, "name": name, "phone": "", "email": "", "member": False, "opt_out": False,
         "birthday": date(1980, 1, 1)}
        for cid, name in names(n)
    )  # fmt: skip
    bulk_insert(store, customers, customer_rows(records, now))
    engine = CrmdEngine(site, RuleSet((SALES_CALLBACK,)))
    work = deliveries(n, now)
    first = min(at for _, _, at in work)
    with Unit(store) as unit:  # the rule is first seen before the first delivery
        engine.tick(unit, first - timedelta(hours=1))
    due = max(callback_time(at) for _, _, at in work)

    started = perf_counter()
    with store.write() as conn:
        for start in range(0, n, 5000):
            new = [
                NewEvent("sale.delivered", at, cid, None, {}, did)
                for did, cid, at in work[start : start + 5000]
            ]
            record_events(conn, new, site.event_types, now)
    events_in = perf_counter() - started
    with Unit(store) as unit:
        report = engine.tick(unit, due)
    elapsed = perf_counter() - started

    with store.read() as conn:
        made = conn.execute(select(func.count()).select_from(tasks)).scalar_one()
    fired = report.count("fired")
    store.dispose()
    if made != n or fired != n or report.errors:
        raise SystemExit(f"crmd: {fired} fires, {made} tasks, errors {report.errors}; want {n}")
    return {"events_in_s": round(events_in, 2), "end_to_end_s": round(elapsed, 2)}


# ---------------------------------------------------------------- APScheduler

meta = MetaData()
aps_customers = Table(
    "customers", meta, Column("id", String(64), primary_key=True), Column("name", String(200))
)
aps_tasks = Table(
    "tasks",
    meta,
    Column("id", Integer, primary_key=True),
    Column("delivery_id", String(64), nullable=False, unique=True),
    Column("customer_id", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("available_at", DateTime, nullable=False),
    Column("due_at", DateTime, nullable=False),
)
_db: Engine | None = None


def wal_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60})

    @event.listens_for(engine, "connect")
    def _wal(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA synchronous=NORMAL")

    return engine


def write_task(delivery_id: str, customer_id: str, run_at: str) -> None:
    """The job each delivery schedules: read the customer, write the callback task."""
    assert _db is not None
    at = datetime.fromisoformat(run_at)
    with _db.begin() as conn:
        name = conn.execute(
            select(aps_customers.c.name).where(aps_customers.c.id == customer_id)
        ).scalar_one()
        conn.execute(
            insert(aps_tasks).values(
                delivery_id=delivery_id,
                customer_id=customer_id,
                title=f"销售回访 {name}",
                available_at=at.replace(tzinfo=None),
                due_at=(at + timedelta(days=2)).replace(tzinfo=None),
            )
        )


def run_apscheduler(workdir: Path, n: int, now: datetime) -> dict[str, Any]:
    global _db
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    _db = wal_engine(f"sqlite:///{workdir / 'aps.db'}")
    meta.create_all(_db)
    with _db.begin() as conn:
        conn.execute(insert(aps_customers), [{"id": c, "name": m} for c, m in names(n)])
    work = deliveries(n, now)

    done, failed = threading.Event(), []
    counter = {"executed": 0}
    lock = threading.Lock()

    def listen(ev: Any) -> None:
        if ev.code != EVENT_JOB_EXECUTED:
            failed.append(f"{ev.job_id}: {getattr(ev, 'exception', None) or 'missed'}")
            done.set()
            return
        with lock:
            counter["executed"] += 1
            if counter["executed"] == n:
                done.set()

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=_db)},
        job_defaults={"misfire_grace_time": None, "coalesce": False},
        timezone=TZ,
    )
    scheduler.add_listener(listen, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    started = perf_counter()
    scheduler.start(paused=True)
    for did, cid, at in work:
        run_at = callback_time(at)
        scheduler.add_job(
            f"{__name__}:write_task",
            "date",
            run_date=run_at,
            args=(did, cid, run_at.isoformat()),
            id=did,
        )
    events_in = perf_counter() - started
    scheduler.resume()
    done.wait()
    elapsed = perf_counter() - started
    scheduler.shutdown(wait=True)
    with _db.connect() as conn:
        made = conn.execute(select(func.count()).select_from(aps_tasks)).scalar_one()
    _db.dispose()
    if failed or made != n:
        raise SystemExit(f"APScheduler: {made} tasks, want {n}; failures: {failed[:3]}")
    return {"events_in_s": round(events_in, 2), "end_to_end_s": round(elapsed, 2)}


# ---------------------------------------------------------------- one build per process


def child(build: str, n: int, workdir: Path, now: datetime) -> None:
    figures = (run_crmd if build == "crmd" else run_apscheduler)(workdir, n, now)
    figures["peak_rss_mb"] = peak_mb()
    print(json.dumps(figures))


def tasks_written(workdir: Path, build: str) -> int:
    path = workdir / ("crmd.db" if build == "crmd" else "aps.db")
    try:
        with sqlite3.connect(path, timeout=60) as con:
            return int(con.execute("SELECT count(*) FROM tasks").fetchone()[0])
    except sqlite3.Error:
        return 0


def measure(build: str, n: int, limit: float, now: datetime) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"crmd-vs-{build}-") as tmp:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            build,
            "--n",
            str(n),
            "--workdir",
            tmp,
            "--now",
            now.isoformat(),
        ]
        started = perf_counter()
        try:
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            written = tasks_written(Path(tmp), build)
            seconds = perf_counter() - started
            return {
                "finished": False,
                "stopped_after_s": round(seconds, 1),
                "tasks_written": written,
                "end_to_end_s_extrapolated": round(seconds * n / written, 1) if written else None,
            }
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"{build} N={n} failed:\n{exc.stderr}") from None
        figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return {"finished": True, **figures}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, action="append", help="deliveries (repeatable)")
    parser.add_argument("--limit", type=float, default=900, help="seconds per build and N")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    parser.add_argument("--child", choices=["crmd", "apscheduler"], help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = args.n or [10_000, 100_000]
    if args.child:
        child(args.child, sizes[0], args.workdir, datetime.fromisoformat(args.now))
        return
    # Both builds see the same deliveries: the same `now` places them in the past.
    now = datetime.now(UTC).replace(microsecond=0)
    results: dict[str, Any] = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "runs": [],
    }
    for n in sizes:
        run = {"n": n}
        for build in ("crmd", "apscheduler"):
            run[build] = measure(build, n, args.limit, now)
            print(f"N={n} {build}: {run[build]}", file=sys.stderr, flush=True)
        crmd, aps = run["crmd"], run["apscheduler"]
        aps_s = aps.get("end_to_end_s") or aps.get("end_to_end_s_extrapolated")
        if crmd.get("finished") and aps_s:
            run["apscheduler_over_crmd"] = round(aps_s / crmd["end_to_end_s"], 1)
            run["ratio_extrapolated"] = not aps["finished"]
        results["runs"].append(run)
    text = json.dumps(results, indent=2, ensure_ascii=False)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
