"""`crmd check`, `crmd tick` and `crmd plan`: validate the policy, run one evaluation pass,
and audit in a dry run what the schedule will do."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from crmd.cli.main import App, check_option, parse_instant, pass_app, print_counts

if TYPE_CHECKING:
    from crmd.cli.fireview import FireJsonStream
    from crmd.engine.report import FireRecord
    from crmd.site import Site


@click.command()
@pass_app
def check(app: App) -> None:
    """Validate every rule and channel file; print a summary, or each error as file:line:col.

    A channel whose secrets are missing is a warning: the daemon holds its messages.
    """
    from crmd.channels.settings import load_channels
    from crmd.engine.horizon import calendar_needs, calendar_warnings, site_year_warnings

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


def _json_stream(now: datetime, site: Site) -> FireJsonStream:
    from crmd.cli.fireview import FireJsonStream

    return FireJsonStream(now.astimezone(UTC), site, lambda text: click.echo(text, nl=False))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_app
def tick(app: App, as_json: bool) -> None:
    """Run one evaluation pass at now (or --now). Running it twice changes nothing."""
    from crmd.cli.fireview import fires_table
    from crmd.store.database import Unit

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
        print_counts(report)
    if report.errors:
        sys.exit(1)


@click.command()
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
    from crmd.cli.fireview import LinesByTime, fire_line, plan_stops, plan_summary_table
    from crmd.store.database import Unit

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
        print_counts(report)
    if report.rules:
        descriptions = {r.id: r.description for r in engine.rules}
        plan_summary_table(report.rules, descriptions, app.site)
    if summary:
        for error in report.errors:
            click.echo(f"error: {error}", err=True)
    for line in plan_stops(report.stops, app.site):
        click.echo(line)
