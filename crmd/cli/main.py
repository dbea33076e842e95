"""The `crmd` command: thin wrappers that parse, call the core, and print."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from crmd.channels import outbox as ox
from crmd.cli import known
from crmd.cli.view import (
    FireJsonStream,
    LinesByTime,
    failing_lines,
    fire_line,
    fires_table,
    message_json,
    outbox_table,
    plan_stops,
    plan_summary_table,
    sites_table,
    task_json,
    tasks_table,
)
from crmd.daemon.clock import Clock, FixedClock, SystemClock
from crmd.daemon.health import live_daemons, site_directories, site_health, survey_site
from crmd.daemon.logs import setup_logging
from crmd.engine import tasks as task_ops
from crmd.engine.evaluation import Engine
from crmd.engine.horizon import CalendarNeed, calendar_needs, calendar_warnings, site_year_warnings
from crmd.engine.report import FireRecord, TickReport
from crmd.errors import CrmdError, RuleSetError
from crmd.events import ATTEMPT_OUTCOMES
from crmd.intake import repeats
from crmd.intake.records import NewEvent, record_events
from crmd.rules.rule import RuleSet
from crmd.rules.ruleset import load_rules
from crmd.site import SETTINGS_FILE, Site, load_site, open_site, site_root
from crmd.store import queries as q
from crmd.store import work
from crmd.store.database import Store, Unit
from crmd.store.nowguard import refuse_going_back

logger = logging.getLogger("crmd")


@dataclass
class App:
    """What every command needs: the site, the clock (read once), and the store."""

    site_dir: str | None
    clock: Clock
    _site: Site | None = None
    _store: Store | None = None
    _now: datetime | None = field(default=None)

    @property
    def site(self) -> Site:
        if self._site is None:
            self._site = open_site(self.site_dir)
        return self._site

    def zone_site(self) -> Site | None:
        """The site, if the directory is one: whose zone reads --now (`crmd sites DIR` and
        `crmd run --sites DIR` need no site of their own)."""
        if (site_root(self.site_dir) / SETTINGS_FILE).is_file():
            return self.site
        return None

    @property
    def now(self) -> datetime:
        # The clock is read once per command, and that instant is handed to everything below.
        if self._now is None:
            self._now = self.clock.now()
        return self._now

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.site.store_url, schema=self.site.store_schema)
        return self._store

    def close(self) -> None:
        """Close the store's connections (a PostgreSQL server counts them)."""
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def rules(self) -> RuleSet:
        return load_rules(self.site)

    def writing(self, command: str) -> Store:
        """The store, for a writing command; refused if its --now lies before the store's
        last tick (crmd.store.nowguard). Without --now the clock is the real one."""
        if isinstance(self.clock, FixedClock):
            with self.store.read() as conn:
                refuse_going_back(conn, self.now, self.site.timezone, command)
        return self.store

    def engine(self) -> Engine:
        return Engine(self.site, self.rules())


def parse_instant(text: str, site: Site | None = None) -> datetime:
    """An ISO-8601 instant; without an offset it is the site's local time."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO-8601 time; write e.g. 2026-11-23T09:00+08:00"
        ) from None
    if value.tzinfo is None:
        tz = site.timezone if site is not None else load_site(None).timezone
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC)


def check_option(option: str, kind: str, value: object, names: Iterable[str]) -> None:
    """A usage error (exit 2) for a name an option gives that is not among `names`."""
    message = known.problem(kind, value, names)
    if message is not None:
        raise click.BadParameter(message, param_hint=option)


def fail(message: str) -> NoReturn:
    click.echo(f"crmd: {message}", err=True)
    sys.exit(1)


class CrmdGroup(click.Group):
    """Turns expected errors into a plain message and exit status 1, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RuleSetError as exc:
            for error in exc.errors:
                click.echo(str(error), err=True)
            click.echo(f"crmd: {len(exc.errors)} error(s); nothing was loaded", err=True)
            sys.exit(1)
        except CrmdError as exc:
            fail(str(exc))


@click.group(cls=CrmdGroup)
@click.option(
    "--site",
    "site_dir",
    envvar="CRMD_SITE",
    type=click.Path(file_okay=False),
    help="Site directory (rules/, channels/, store/, site.yaml). Default: current directory.",
)
@click.option("--now", "now_text", help="Pin the clock to this ISO-8601 instant.")
@click.option(
    "--log-level",
    envvar="CRMD_LOG_LEVEL",
    help="Log level (or CRMD_LOG_LEVEL). Default: info for `run`, warning otherwise.",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.version_option(package_name="crmd")
@click.pass_context
def main(
    ctx: click.Context, site_dir: str | None, now_text: str | None, log_level: str | None
) -> None:
    """crmd: deadlines of a dealership's customer-relations department, as rules."""
    default = "info" if ctx.invoked_subcommand == "run" else "warning"
    setup_logging(log_level or default)
    clock: Clock = SystemClock()
    app = App(site_dir, clock)
    if now_text:
        app.clock = FixedClock(parse_instant(now_text, app.zone_site()))
    ctx.obj = app
    ctx.call_on_close(app.close)


pass_app = click.make_pass_decorator(App)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@main.command()
@pass_app
def check(app: App) -> None:
    """Validate every rule and channel file; print a summary, or each error as file:line:col.

    A channel whose secrets are missing is a warning: the daemon holds its messages.
    """
    from crmd.channels.settings import load_channels

    ruleset = app.rules()
    channels = load_channels(app.site)
    for name, count in sorted(ruleset.files.items()):
        click.echo(f"{name}: {count} rule{'s' if count != 1 else ''}")
    for name, settings in sorted(channels.settings.items()):
        ready = "not ready" if name in channels.not_ready else "ready"
        click.echo(f"{settings.file}: channel {name} ({settings.type}), {ready}")
    for name, why in sorted(channels.not_ready.items()):
        click.echo(
            f"warning: channel {name} is not ready: {why}; until then its messages are held",
            err=True,
        )
    # Warned ahead (issue 14): a rule needing a year the calendar does not know fails then.
    needs = calendar_needs(ruleset.rules, app.site, app.now)
    for warning in calendar_warnings(needs, app.site, app.now) + site_year_warnings(app.site):
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"ok: {len(ruleset.rules)} rules in {len(ruleset.files)} files, "
        f"{len(channels.settings)} channels"
    )


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", required=True, type=click.Choice(["customers", "vehicles", "events"]))
@pass_app
def import_(app: App, file: Path, kind: str) -> None:
    """Import a CSV file of customers, vehicles or events (all rows, or none)."""
    from crmd.intake.importer import import_csv

    app.writing("crmd import")
    result = import_csv(app.store, app.site, file, kind, app.now)
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{file}: {result.added} added, {result.changed} changed, {result.unchanged} unchanged"
    )


@main.command()
@click.argument("event_type")
@click.option("--customer", "customer_id", help="Customer id.")
@click.option("--vehicle", "vehicle_id", help="Vehicle id.")
@click.option("--at", "at_text", help="When it happened (ISO-8601). Default: now.")
@click.option("--id", "event_id", default="", help="Your id for it; recording it again is a no-op.")
@click.option("--data", "data", multiple=True, metavar="KEY=VALUE", help="Extra event data.")
@click.option("--again", is_flag=True, help="Record it though the same was just recorded.")
@pass_app
def event(
    app: App,
    event_type: str,
    customer_id: str | None,
    vehicle_id: str | None,
    at_text: str | None,
    event_id: str,
    data: Sequence[str],
    again: bool,
) -> None:
    """Record one event, e.g. `crmd event sale.delivered --customer C1 --vehicle V1`."""
    fields: dict[str, Any] = {}
    for item in data:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: write --data key=value")
        fields[key] = _scalar(value)
    at = parse_instant(at_text, app.site) if at_text else app.now
    app.writing("crmd event")
    with app.store.write() as conn:
        if customer_id:
            known.check_customer(conn, customer_id)
        if vehicle_id:
            known.check_vehicle(conn, vehicle_id, customer_id)
        if not again and not (event_id and q.get_event(conn, event_id)):
            previous = repeats.same_event(conn, event_type, at, customer_id, vehicle_id, fields)
            if previous is not None:
                raise repeats.refuse(f"this {event_type}", previous, app.site.timezone)
        result = record_events(
            conn,
            [NewEvent(event_type, at, customer_id, vehicle_id, fields, event_id)],
            app.site.event_types,
            app.now,
        )
    click.echo("recorded" if result.added else "already recorded; nothing changed")


def _scalar(text: str) -> Any:
    """`--data` values: numbers and true/false become numbers and booleans."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _print_counts(report: TickReport) -> None:
    fired, failed = report.count("fired"), report.count("failed")
    click.echo(
        f"{fired} fired, {report.count('skipped')} skipped, {report.count('cancelled')} "
        f"cancelled, {failed} failed, {report.overdue_count} task(s) fell overdue"
    )
    if report.history:
        click.echo(
            f"{report.history} fire(s) fell due before their rule came into force and their "
            f"task's window had closed: history, not made"
        )
    if report.failed_pending:
        click.echo(
            f"{report.failed_pending} failed fire(s) pending: `crmd fires --failed` says why "
            f"and what to fix",
            err=True,
        )
    for error in report.errors:
        click.echo(f"error: {error}", err=True)


def _json_stream(now: datetime, site: Site) -> FireJsonStream:
    return FireJsonStream(now.astimezone(UTC), site, lambda text: click.echo(text, nl=False))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def tick(app: App, as_json: bool) -> None:
    """Run one evaluation pass at now (or --now). Running it twice changes nothing."""
    engine = app.engine()
    app.writing("crmd tick")
    stream = _json_stream(app.now, app.site) if as_json else None
    with Unit(app.store) as unit:
        report = engine.tick(unit, app.now, on_fire=stream)
    if stream is not None:
        stream.close(report.overdue, report.overdue_count, report.errors)
        click.echo()
    else:
        if report.fires:
            fires_table(report.fires, app.site)
        if report.left_out:
            click.echo(f"(the first {len(report.fires)} of {report.count()} fires are listed)")
        _print_counts(report)
    if report.errors:
        sys.exit(1)


@main.command()
@click.option(
    "--from",
    "start_text",
    help="Window start (ISO-8601, exclusive). Default: where each rule stands, i.e. what "
    "the daemon would catch up on if started now.",
)
@click.option("--to", "end_text", help="Window end (ISO-8601, inclusive). Default: now.")
@click.option("--rule", "only_rules", multiple=True, metavar="ID", help="Only these rules.")
@click.option("--summary", is_flag=True, help="Only the count per rule, not every fire.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def plan(
    app: App,
    start_text: str | None,
    end_text: str | None,
    only_rules: tuple[str, ...],
    summary: bool,
    as_json: bool,
) -> None:
    """Dry run: every fire the rules and store would produce in a window. Writes nothing.

    It assumes nobody closes a task and no new event arrives in the window, so escalations
    of unfinished work show up too. Fires already past by the clock are a catch-up (late).
    Fires are listed in time order.
    """
    end = parse_instant(end_text, app.site) if end_text else app.now
    start = parse_instant(start_text, app.site) if start_text else None
    if start is not None and end <= start:
        raise click.BadParameter("--to must be after --from")
    engine = app.engine()
    for rule_id in only_rules:
        check_option("--rule", "enabled rule", rule_id, (r.id for r in engine.rules))
    tz = app.site.timezone
    stream = _json_stream(end, app.site) if as_json else None
    if stream is None:
        since = f"{start.astimezone(tz):%Y-%m-%d %H:%M}" if start else "where each rule stands"
        click.echo(
            f"plan for {since} .. {end.astimezone(tz):%Y-%m-%d %H:%M} ({app.site.name}): "
            f"assuming no task is closed and no new event arrives"
        )

    listed = stream is not None or not summary
    lines = LinesByTime()

    def on_fire(f: FireRecord) -> None:
        if listed and not (only_rules and f.rule_id not in only_rules):
            lines.add(f.fire_at, fire_line(f, app.site) if stream is None else stream.render(f))

    try:
        with Unit(app.store, dry_run=True) as unit:
            report = engine.tick(
                unit, end, window_start=start, late_as_of=app.now, on_fire=on_fire, up_to_stops=True
            )
        for line in lines:
            if stream is not None:
                stream.put(line)
            else:
                click.echo(line)
    finally:
        lines.close()
    if only_rules:
        report.rules = {r: t for r, t in report.rules.items() if r in only_rules}
        report.stops = {r: s for r, s in report.stops.items() if r in only_rules}
    if stream is not None:
        stream.close(report.overdue, report.overdue_count, report.errors, report.stops)
        click.echo()
        return
    if not summary:
        _print_counts(report)
    if report.rules:
        descriptions = {r.id: r.description for r in engine.rules}
        plan_summary_table(report.rules, descriptions, app.site)
    if summary:
        for error in report.errors:
            click.echo(f"error: {error}", err=True)
    for line in plan_stops(report.stops, app.site):
        click.echo(line)


@main.command("tasks")
@click.option("--role", help="Only tasks for this role.")
@click.option(
    "--all", "everything", is_flag=True, help="Every task, whatever its window or status."
)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def tasks_(app: App, role: str | None, everything: bool, as_json: bool) -> None:
    """Open tasks whose window has started, by due time; overdue ones marked."""
    if role is not None:
        check_option("--role", "role", role, app.site.roles)
    with app.store.read() as conn:
        rows = work.list_tasks(conn, app.now, role=role, everything=everything)
    if as_json:
        _print_json([task_json(r, app.now, app.site) for r in rows])
    elif rows:
        tasks_table(rows, app.now, app.site)
    else:
        click.echo("no tasks")


@main.group()
def task() -> None:
    """Work on one task: record a call attempt, or mark it done."""


@task.command()
@click.argument("task_id", type=int)
@click.option("--outcome", required=True, type=click.Choice(ATTEMPT_OUTCOMES))
@click.option("--score", type=click.IntRange(1, 10), help="Satisfaction score 1-10.")
@click.option("--note", help="What the customer said.")
@click.option("--again", is_flag=True, help="Record it though the same was just recorded.")
@pass_app
def attempt(
    app: App, task_id: int, outcome: str, score: int | None, note: str | None, again: bool
) -> None:
    """Record a call attempt; `reached` closes the task, other outcomes keep it open."""
    app.writing("crmd task attempt")
    with app.store.write() as conn:
        known.check_task(conn, task_id)
        previous = None if again else repeats.previous_attempt(conn, task_id, outcome, app.now)
        if previous is not None:
            raise repeats.refuse(
                f"a {outcome} attempt on task {task_id}", previous, app.site.timezone
            )
        row = task_ops.attempt(conn, task_id, outcome, app.now, score=score, note=note)
    click.echo(f"task {task_id}: attempt {row.attempts} ({outcome}); task is {row.status}")


@task.command()
@click.argument("task_id", type=int)
@click.option("--note", help="A closing note.")
@pass_app
def done(app: App, task_id: int, note: str | None) -> None:
    """Mark a task done."""
    app.writing("crmd task done")
    with app.store.write() as conn:
        known.check_task(conn, task_id)
        task_ops.done(conn, task_id, app.now, note=note)
    click.echo(f"task {task_id}: done")


@main.command()
@click.option("--dry-run", is_flag=True, help="Evaluate and log what would fire; write nothing.")
@click.option("--interval", default=30.0, show_default=True, help="Seconds between ticks.")
@click.option("--once", is_flag=True, help="Run one tick and exit (for cron and tests).")
@click.option(
    "--sites",
    "sites_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run every site under this directory (one directory per site) in this process.",
)
@click.option("--workers", default=4, show_default=True, help="With --sites: sites ticked at once.")
@pass_app
def run(
    app: App, dry_run: bool, interval: float, once: bool, sites_dir: Path | None, workers: int
) -> None:
    """The daemon: tick the rules every --interval seconds until stopped (SIGHUP reloads)."""
    from crmd.daemon.group import GroupDaemon
    from crmd.daemon.service import serve

    if interval <= 0:
        raise click.BadParameter("--interval must be more than 0 seconds")
    if workers < 1:
        raise click.BadParameter("--workers must be at least 1")
    if sites_dir is not None:
        group = GroupDaemon(
            sites_dir, app.clock, interval=interval, workers=workers, dry_run=dry_run
        )
        group.run(once=once)
        return
    # The store is opened (and so migrated) once serve holds the daemon's lock.
    open_store = (lambda: app.store) if dry_run else (lambda: app.writing("crmd run"))
    serve(app.site, app.clock, open_store, dry_run=dry_run, interval=interval, once=once)


@main.command()
@pass_app
def reload(app: App) -> None:
    """Check the rule and channel files, then tell the running daemon to load them (SIGHUP)."""
    from crmd.channels.settings import load_channels
    from crmd.daemon.instance import lock_path, running_pid

    ruleset = app.rules()  # a bad set stops here, with every error as file:line:col
    load_channels(app.site)  # so does a bad channel file
    if not app.store.is_sqlite:
        _reload_shared(app, len(ruleset.rules))
        return
    pid = running_pid(app.site)
    if pid is None:
        fail(f"no crmd daemon is running on this store (nothing holds {lock_path(app.site)})")
    if pid < 0:
        fail(f"a daemon holds {lock_path(app.site)} but its PID is unknown; reload it by hand")
    os.kill(pid, signal.SIGHUP)
    click.echo(
        f"rules and channels ok ({len(ruleset.rules)} rules); asked daemon PID {pid} to reload"
    )


def _reload_shared(app: App, rules: int) -> None:
    """Reload the daemons of this host that share a PostgreSQL store (SIGHUP to each)."""
    with app.store.read() as conn:
        running = live_daemons(conn, app.store.schema)
    host = socket.gethostname()
    here = [b.pid for b in running if b.host == host]
    if not here:
        fail(f"no crmd daemon of this host ({host}) is running on this store")
    for pid in here:
        os.kill(pid, signal.SIGHUP)
    others = sorted({b.host for b in running if b.host != host})
    elsewhere = f"; reload those on {', '.join(others)} there" if others else ""
    click.echo(
        f"rules and channels ok ({rules} rules); asked daemon PID "
        f"{', '.join(map(str, here))} to reload{elsewhere}"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def status(app: App, as_json: bool) -> None:
    """Whether the daemon runs, its last tick and lag, and the open, overdue and held work.

    Exits 0 when a daemon is running and all is well; 3 when no daemon is running (like
    `systemctl status`); 1 when a rule is failing on every tick; 4 while failed fires wait
    to be fixed (`crmd fires --failed`).
    """
    health = site_health(app.site, app.store, app.now)
    info = health.as_json()
    needs = _calendar_needs(app)
    info["calendar_needs"] = [
        {"rule": n.rule_id, "year": n.year, "from": n.at.isoformat()} for n in needs
    ]
    running, pid, counts = health.running, health.pid, health.counts
    last_tick, lag = health.last_tick, health.lag_seconds
    if as_json:
        _print_json(info)
    else:
        tz = app.site.timezone
        if len(running) > 1:
            click.echo(f"daemons: {len(running)} running, {info['rules']} rules")
            for b in running:
                click.echo(f"  PID {b.pid} on {b.host}")
        elif pid is not None:
            click.echo(f"daemon: running (PID {info['pid']}), {info['rules']} rules")
        else:
            click.echo("daemon: not running")
        if last_tick is not None:
            click.echo(
                f"last tick: {last_tick.astimezone(tz):%Y-%m-%d %H:%M:%S} (lag {_span(lag or 0)})"
            )
        else:
            click.echo("last tick: never")
        if info["last_error"]:
            click.echo(f"last error: {info['last_error']}")
        click.echo(
            f"tasks: {counts['open_tasks']} open, {counts['overdue_tasks']} overdue; "
            f"messages: {counts['queued_messages']} queued, {counts['held_messages']} held, "
            f"{counts['dead_messages']} dead"
        )
        if counts["failed_fires"]:
            click.echo(
                f"failed fires: {counts['failed_fires']} (customers owed work that could not "
                f"be done: `crmd fires --failed`)"
            )
        for line in failing_lines(health.failing, app.site):
            click.echo(line)
        for warning in calendar_warnings(needs, app.site, app.now):
            click.echo(f"warning: {warning}", err=True)
    if pid is None:
        sys.exit(3)
    if health.failing:
        sys.exit(1)
    if counts["failed_fires"]:
        sys.exit(4)


def _calendar_needs(app: App) -> list[CalendarNeed]:
    """The rules that soon need a calendar year not known (crmd.engine.horizon), for `status`."""
    try:
        rules = app.rules()
    except CrmdError:
        click.echo(
            "warning: the rule files have errors (`crmd check` lists them), so the calendar "
            "was not looked ahead",
            err=True,
        )
        return []
    return calendar_needs(rules.rules, app.site, app.now)


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_app
def sites(app: App, directory: Path, as_json: bool) -> None:
    """Every site in DIRECTORY (one directory per site): daemons, last tick and work.

    Changes nothing: a site whose store does not exist yet or needs an upgrade says so.
    Exits 0 when every site has a running daemon, 3 otherwise.
    """
    rows = [survey_site(d, app.now) for d in site_directories(directory)]
    if as_json:
        _print_json([row.as_json() for row in rows])
    elif rows:
        sites_table(rows)
    else:
        click.echo(f"no sites in {directory} (a site is a directory with a site.yaml)")
    if not rows or any(row.state != "running" for row in rows):
        sys.exit(3)


def _span(seconds: float) -> str:
    """A lag in words: '12s', '5m 3s', '2h 10m', '3d 4h'."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


@main.command()
@click.option("--days", default=14, show_default=True, help="How much history to make up.")
@click.option(
    "--customers", default=40, show_default=True, help="How many customers (a store has ~1,500)."
)
@pass_app
def demo(app: App, days: int, customers: int) -> None:
    """Fill an empty store with a small demo dealership, so `crmd run` has work to show."""
    from crmd.cli.demo import load_demo

    count = load_demo(app.store, app.site, app.engine(), app.now, days=days, customers=customers)
    click.echo(f"demo store ready at {app.store.where}: {count} events")


@main.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(ox.STATUSES), help="Only messages in this state.")
@click.option("--limit", default=200, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def outbox(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """Messages to customers and staff: sent, waiting (queued), held, dead or cancelled."""
    if ctx.invoked_subcommand is not None:
        return
    app = ctx.find_object(App)
    assert app is not None
    with app.store.read() as conn:
        rows = ox.listed(conn, status, limit)
    if as_json:
        _print_json([message_json(m, app.site) for m in rows])
    elif rows:
        outbox_table(rows, app.site)
    else:
        click.echo("no messages")


@outbox.command("retry")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@pass_app
def outbox_retry(app: App, message_ids: tuple[int, ...]) -> None:
    """Send held, dead or cancelled messages again, at the next pass of the sender."""
    for message_id in message_ids:
        with app.store.write() as conn:
            known.check_message(conn, message_id)
            ox.retry(conn, message_id, app.now)
        click.echo(f"message {message_id}: queued")


@outbox.command("cancel")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@pass_app
def outbox_cancel(app: App, message_ids: tuple[int, ...]) -> None:
    """Cancel messages that have not gone out."""
    for message_id in message_ids:
        with app.store.write() as conn:
            known.check_message(conn, message_id)
            ox.cancel(conn, message_id, app.now)
        click.echo(f"message {message_id}: cancelled")


@outbox.command("send")
@pass_app
def outbox_send(app: App) -> None:
    """Send what is due now, once (the daemon does this every tick)."""
    from crmd.channels.sender import Sender

    sender = Sender.for_site(app.site, app.store)
    try:
        report = sender.run_once(app.now)
    finally:
        sender.close()
    click.echo(str(report))
