"""`crmd outbox`: the messages to customers and staff, and sending, retrying or cancelling
them by hand."""

from __future__ import annotations

import click

from crmd.channels.base import MESSAGE_STATUSES
from crmd.cli.main import App, pass_app, print_json


@click.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(MESSAGE_STATUSES), help="Only messages in this state.")
@click.option("--limit", default=200, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def outbox(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """Messages to customers and staff: sent, waiting (queued), held, dead or cancelled."""
    if ctx.invoked_subcommand is not None:
        return
    from crmd.channels import outbox as ox
    from crmd.cli.view import message_json, outbox_table

    app = ctx.find_object(App)
    assert app is not None
    with app.store.read() as conn:
        rows = ox.listed(conn, status, limit)
    if as_json:
        print_json([message_json(m, app.site) for m in rows])
    elif rows:
        outbox_table(rows, app.site)
    else:
        click.echo("no messages")


@outbox.command("retry")
@click.argument("message_ids", type=int, nargs=-1, required=True)
@pass_app
def outbox_retry(app: App, message_ids: tuple[int, ...]) -> None:
    """Send held, dead or cancelled messages again, at the next pass of the sender."""
    from crmd.channels import outbox as ox
    from crmd.cli import known

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
    from crmd.channels import outbox as ox
    from crmd.cli import known

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
