"""`crmd run`, `crmd reload`, `crmd status` and `crmd sites`: the daemon and what the IT person
asks of it."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from crmd.cli.main import App, fail, pass_app, print_json
from crmd.errors import CrmdError

if TYPE_CHECKING:
    from crmd.engine.horizon import CalendarNeed


@click.command()
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


@click.command()
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
    from crmd.daemon.health import live_daemons

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


@click.command()
@click.option("--json", "as_json", is_flag=True)
@pass_app
def status(app: App, as_json: bool) -> None:
    """Whether the daemon runs, its last tick and lag, and the open, overdue and held work.

    Exits 0 when a daemon is running and all is well; 3 when no daemon is running (like
    `systemctl status`); 1 when a rule is failing on every tick; 4 while failed fires wait
    to be fixed (`crmd fires --failed`).
    """
    from crmd.cli.fireview import failing_lines
    from crmd.daemon.health import site_health
    from crmd.engine.horizon import calendar_warnings

    health = site_health(app.site, app.store, app.now)
    info = health.as_json()
    needs = _calendar_needs(app)
    info["calendar_needs"] = [
        {"rule": n.rule_id, "year": n.year, "from": n.at.isoformat()} for n in needs
    ]
    running, pid, counts = health.running, health.pid, health.counts
    last_tick, lag = health.last_tick, health.lag_seconds
    if as_json:
        print_json(info)
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
    from crmd.engine.horizon import calendar_needs

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


@click.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_app
def sites(app: App, directory: Path, as_json: bool) -> None:
    """Every site in DIRECTORY (one directory per site): daemons, last tick and work.

    Changes nothing: a site whose store does not exist yet or needs an upgrade says so.
    Exits 0 when every site has a running daemon, 3 otherwise.
    """
    from crmd.cli.view import sites_table
    from crmd.daemon.health import site_directories, survey_site

    rows = [survey_site(d, app.now) for d in site_directories(directory)]
    if as_json:
        print_json([row.as_json() for row in rows])
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
