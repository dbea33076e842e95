"""The root of the `crmd` command: its global options, the App every command gets, and the
small helpers the command families share (crmd.cli.commands adds the families).

Command modules import only click and this module at their top; what a command needs
(the store, the engine, SQLAlchemy, rich) is imported inside it, so `crmd --help` and a
command that touches little start at once (tests/test_cli_imports.py holds the line).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click

from crmd.daemon.clock import Clock, FixedClock, SystemClock
from crmd.daemon.logs import setup_logging
from crmd.errors import CrmdError, RuleSetError

if TYPE_CHECKING:
    from crmd.engine.evaluation import Engine
    from crmd.engine.report import TickReport
    from crmd.rules.rule import RuleSet
    from crmd.site import Site
    from crmd.store.database import Store


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
            from crmd.site import open_site

            self._site = open_site(self.site_dir)
        return self._site

    def zone_site(self) -> Site | None:
        """The site, if the directory is one: whose zone reads --now (`crmd sites DIR` and
        `crmd run --sites DIR` need no site of their own)."""
        from crmd.site import SETTINGS_FILE, site_root

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
            from crmd.store.database import Store

            self._store = Store.open(self.site.store_url, schema=self.site.store_schema)
        return self._store

    def close(self) -> None:
        """Close the store's connections (a PostgreSQL server counts them)."""
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def rules(self) -> RuleSet:
        from crmd.rules.ruleset import load_rules

        return load_rules(self.site)

    def writing(self, command: str) -> Store:
        """The store, for a writing command; refused if its --now lies before the store's
        last tick (crmd.store.nowguard). Without --now the clock is the real one."""
        if isinstance(self.clock, FixedClock):
            from crmd.store.nowguard import refuse_going_back

            with self.store.read() as conn:
                refuse_going_back(conn, self.now, self.site.timezone, command)
        return self.store

    def engine(self) -> Engine:
        from crmd.engine.evaluation import Engine

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
        if site is None:
            from crmd.site import load_site

            site = load_site(None)
        value = value.replace(tzinfo=site.timezone)
    return value.astimezone(UTC)


def check_option(option: str, kind: str, value: object, names: Iterable[str]) -> None:
    """A usage error (exit 2) for a name an option gives that is not among `names`."""
    from crmd.cli import known

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


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def print_counts(report: TickReport) -> None:
    """The one-line summary of a tick (or a retry), and what is left to fix."""
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
