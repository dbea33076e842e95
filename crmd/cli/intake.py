"""`crmd import`, `crmd event` and `crmd demo`: data coming into the store, from a file, one
event at a time, or a made-up dealership to try crmd on."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from crmd.cli.main import App, parse_instant, pass_app


@click.command("import")
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


@click.command()
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
    from crmd.cli import known
    from crmd.intake import repeats
    from crmd.intake.records import NewEvent, record_events
    from crmd.store import queries as q

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


@click.command()
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
