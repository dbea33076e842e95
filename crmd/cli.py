"""The `crmd` command: thin wrappers that parse, call the core, and print."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from crmd import queries as q
from crmd import tasks as task_ops
from crmd.clock import Clock, FixedClock, SystemClock
from crmd.engine import Engine, TickReport
from crmd.errors import CrmdError, RuleSetError
from crmd.events import ATTEMPT_OUTCOMES
from crmd.intake import NewEvent, record_events
from crmd.rule import RuleSet
from crmd.ruleset import load_rules
from crmd.site import Site, load_site
from crmd.store import Store, Unit
from crmd.view import fire_json, fires_table, task_json, tasks_table

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
            self._site = load_site(self.site_dir)
        return self._site

    @property
    def now(self) -> datetime:
        # The clock is read once per command, and that instant is handed to everything below.
        if self._now is None:
            self._now = self.clock.now()
        return self._now

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.site.store_url)
        return self._store

    def close(self) -> None:
        """Close the store's connections (a PostgreSQL server counts them)."""
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def rules(self) -> RuleSet:
        return load_rules(self.site)

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


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


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
    default="warning",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
@click.version_option(package_name="crmd")
@click.pass_context
def main(ctx: click.Context, site_dir: str | None, now_text: str | None, log_level: str) -> None:
    """crmd: deadlines of a dealership's customer-relations department, as rules."""
    _setup_logging(log_level)
    clock: Clock = SystemClock()
    app = App(site_dir, clock)
    if now_text:
        app.clock = FixedClock(parse_instant(now_text, app.site))
    ctx.obj = app
    ctx.call_on_close(app.close)


pass_app = click.make_pass_decorator(App)


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


@main.command()
@pass_app
def check(app: App) -> None:
    """Validate every rule file of the site; print a summary, or each error as file:line:col."""
    ruleset = app.rules()
    for name, count in sorted(ruleset.files.items()):
        click.echo(f"{name}: {count} rule{'s' if count != 1 else ''}")
    click.echo(f"ok: {len(ruleset.rules)} rules in {len(ruleset.files)} files")


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--kind", required=True, type=click.Choice(["customers", "vehicles", "events"]))
@pass_app
def import_(app: App, file: Path, kind: str) -> None:
    """Import a CSV file of customers, vehicles or events (all rows, or none)."""
    from crmd.importer import import_csv

    result = import_csv(app.store, app.site, file, kind, app.now)
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
@pass_app
def event(
    app: App,
    event_type: str,
    customer_id: str | None,
    vehicle_id: str | None,
    at_text: str | None,
    event_id: str,
    data: Sequence[str],
) -> None:
    """Record one event, e.g. `crmd event sale.delivered --customer C1 --vehicle V1`."""
    fields: dict[str, Any] = {}
    for item in data:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: write --data key=value")
        fields[key] = _scalar(value)
    at = parse_instant(at_text, app.site) if at_text else app.now
    with app.store.write() as conn:
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


def _print_report(report: TickReport, as_json: bool, site: Site) -> None:
    if as_json:
        _print_json(
            {
                "now": report.now.isoformat(),
                "fires": [fire_json(f, site) for f in report.fires],
                "overdue": report.overdue,
                "errors": report.errors,
            }
        )
        return
    if report.fires:
        fires_table(report.fires, site)
    fired = sum(1 for f in report.fires if f.status == "fired")
    click.echo(
        f"{fired} fired, {len(report.fires) - fired} cancelled or skipped, "
        f"{len(report.overdue)} task(s) fell overdue"
    )
    for error in report.errors:
        click.echo(f"error: {error}", err=True)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def tick(app: App, as_json: bool) -> None:
    """Run one evaluation pass at now (or --now). Running it twice changes nothing."""
    engine = app.engine()
    with Unit(app.store) as unit:
        report = engine.tick(unit, app.now)
    _print_report(report, as_json, app.site)
    if report.errors:
        sys.exit(1)


@main.command()
@click.option("--from", "start_text", required=True, help="Window start (ISO-8601, exclusive).")
@click.option("--to", "end_text", required=True, help="Window end (ISO-8601, inclusive).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def plan(app: App, start_text: str, end_text: str, as_json: bool) -> None:
    """Dry run: every fire the rules and store would produce in a window. Writes nothing."""
    start, end = parse_instant(start_text, app.site), parse_instant(end_text, app.site)
    if end <= start:
        raise click.BadParameter("--to must be after --from")
    engine = app.engine()
    with Unit(app.store, dry_run=True) as unit:
        report = engine.tick(unit, end, window_start=start)
    _print_report(report, as_json, app.site)


@main.command("tasks")
@click.option("--role", help="Only tasks for this role.")
@click.option(
    "--all", "everything", is_flag=True, help="Every task, whatever its window or status."
)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def tasks_(app: App, role: str | None, everything: bool, as_json: bool) -> None:
    """Open tasks whose window has started, by due time; overdue ones marked."""
    with app.store.read() as conn:
        rows = q.list_tasks(conn, app.now, role=role, everything=everything)
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
@pass_app
def attempt(app: App, task_id: int, outcome: str, score: int | None, note: str | None) -> None:
    """Record a call attempt; `reached` closes the task, other outcomes keep it open."""
    with app.store.write() as conn:
        row = task_ops.attempt(conn, task_id, outcome, app.now, score=score, note=note)
    click.echo(f"task {task_id}: attempt {row.attempts} ({outcome}); task is {row.status}")


@task.command()
@click.argument("task_id", type=int)
@click.option("--note", help="A closing note.")
@pass_app
def done(app: App, task_id: int, note: str | None) -> None:
    """Mark a task done."""
    with app.store.write() as conn:
        task_ops.done(conn, task_id, app.now, note=note)
    click.echo(f"task {task_id}: done")


@main.command()
@click.option("--dry-run", is_flag=True, help="Evaluate and log what would fire; write nothing.")
@click.option("--interval", default=30.0, show_default=True, help="Seconds between ticks.")
@click.option("--once", is_flag=True, help="Run one tick and exit (for cron and tests).")
@pass_app
def run(app: App, dry_run: bool, interval: float, once: bool) -> None:
    """The daemon: tick the rules every --interval seconds until stopped."""
    from crmd.daemon import Daemon

    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger().setLevel(logging.INFO)
    Daemon(app.site, app.store, app.clock, dry_run=dry_run, interval=interval).run(once=once)


@main.command()
@click.option("--days", default=14, show_default=True, help="How much history to make up.")
@pass_app
def demo(app: App, days: int) -> None:
    """Fill an empty store with a small demo dealership, so `crmd run` has work to show."""
    from crmd.demo import load_demo

    count = load_demo(app.store, app.site, app.engine(), app.now, days=days)
    click.echo(f"demo store ready at {app.store.safe_url}: {count} events")
