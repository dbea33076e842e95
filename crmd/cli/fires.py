"""`crmd fires`: the fires ledger, its failed fires, and trying them again."""

from __future__ import annotations

import getpass
import sys

import click

from crmd.cli.main import App, check_option, pass_app, print_counts, print_json

STATUSES = ("fired", "cancelled", "skipped", "failed", "dismissed")


@click.group(invoke_without_command=True)
@click.option("--failed", is_flag=True, help="Only failed fires (same as --status failed).")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES))
@click.option("--rule", "rule_id", metavar="ID", help="Only this rule's fires.")
@click.option("--customer", "customer_id", metavar="ID", help="Only this customer's fires.")
@click.option("--limit", default=200, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def fires(
    ctx: click.Context,
    failed: bool,
    statuses: tuple[str, ...],
    rule_id: str | None,
    customer_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The fires ledger: what each rule did for whom, and what it could not do.

    A failed fire says why and what to fix; once fixed, the next tick (or `crmd fires
    retry`) makes it. Exits 1 when a failed fire is listed.
    """
    if ctx.invoked_subcommand is not None:
        return
    from crmd.cli import known
    from crmd.cli.view import ledger_json, ledger_table
    from crmd.store import ledger

    app: App = ctx.ensure_object(App)
    wanted = tuple(dict.fromkeys((*statuses, *(["failed"] if failed else []))))
    with app.store.read() as conn:
        if customer_id is not None:
            known.check_customer(conn, customer_id)
        rows = ledger.list_fires(
            conn, statuses=wanted, rule_id=rule_id, customer_id=customer_id, limit=limit
        )
        if rule_id is not None and not rows:
            # Nothing listed: say so if the rule is not known (a listed fire shows it is).
            known_rules = [*ledger.rule_ids(conn), *app.rules().by_id()]
            check_option("--rule", "rule", rule_id, known_rules)
        pending = ledger.count_failed(conn)
    if as_json:
        print_json([ledger_json(r, app.site) for r in rows])
    elif rows:
        ledger_table(rows, app.site)
    else:
        click.echo("no such fires")
    if not as_json and pending:
        click.echo(
            f"{pending} failed fire(s) pending: fix what the reason says, then "
            f"`crmd fires retry --all` (or wait for the next tick), or `crmd fires dismiss ID "
            f"--reason TEXT`",
            err=True,
        )
    if any(r.status == "failed" for r in rows):
        sys.exit(1)


@fires.command("retry")
@click.argument("fire_ids", nargs=-1, type=int)
@click.option("--all", "every", is_flag=True, help="Every failed fire.")
@pass_app
def fires_retry(app: App, fire_ids: tuple[int, ...], every: bool) -> None:
    """Try failed fires again now (those of FIRE_IDS, or --all); each still happens once."""
    from crmd.cli.fireview import fires_table
    from crmd.engine.report import TickReport
    from crmd.store import ledger
    from crmd.store.database import Unit

    if not fire_ids and not every:
        raise click.UsageError("name the fires to retry (their ids), or pass --all")
    if fire_ids and every:
        raise click.UsageError("give fire ids or --all, not both")
    engine = app.engine()
    store = app.writing("crmd fires retry")
    with store.read() as conn:
        failed = set(ledger.failed_ids(conn, fire_ids))
    unknown = [i for i in fire_ids if i not in failed]
    if unknown:
        raise click.BadParameter(
            f"no failed fire {', '.join(map(str, unknown))}; `crmd fires --failed` lists them",
            param_hint="FIRE_IDS",
        )
    report = TickReport(now=app.now)
    with Unit(store) as unit:
        engine.retry_failed(unit, app.now, report, every=every, ids=fire_ids)
        # What the retried fires made (tasks, their events) chains like any tick's work.
        chained = engine.tick(unit, app.now)
    if report.fires:
        fires_table(report.fires, app.site)
    still = report.count("failed")
    done = report.retried - still
    click.echo(f"{report.retried} fire(s) tried again: {done} done, {still} failed")
    print_counts(chained)
    if still:
        sys.exit(1)


@fires.command("dismiss")
@click.argument("fire_id", type=int)
@click.option("--reason", required=True, help="Why it is closed without being done.")
@pass_app
def fires_dismiss(app: App, fire_id: int, reason: str) -> None:
    """Close a failed fire on purpose (it is never tried again); who and why are recorded."""
    from crmd.store import ledger

    by = _who()
    with app.writing("crmd fires dismiss").write() as conn:
        ledger.dismiss(conn, fire_id, reason, by, app.now)
    click.echo(f"fire {fire_id} dismissed by {by}: {reason}")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
