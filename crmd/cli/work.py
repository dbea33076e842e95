"""`crmd tasks` and `crmd task`: the callback specialists' list, and recording a call's
outcome or closing a task (the same events the rules chain on)."""

from __future__ import annotations

import click

from crmd.cli.main import App, check_option, pass_app, print_json
from crmd.events import ATTEMPT_OUTCOMES


@click.command("tasks")
@click.option("--role", help="Only tasks for this role.")
@click.option(
    "--all", "everything", is_flag=True, help="Every task, whatever its window or status."
)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def tasks_(app: App, role: str | None, everything: bool, as_json: bool) -> None:
    """Open tasks whose window has started, by due time; overdue ones marked."""
    from crmd.cli.tasklist import task_json, tasks_table
    from crmd.store import work

    if role is not None:
        check_option("--role", "role", role, app.site.roles)
    with app.store.read() as conn:
        rows = work.list_tasks(conn, app.now, role=role, everything=everything)
    if as_json:
        print_json([task_json(r, app.now, app.site) for r in rows])
    elif rows:
        tasks_table(rows, app.now, app.site)
    else:
        click.echo("no tasks")


@click.group()
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
    from crmd.cli import known
    from crmd.engine import tasks as task_ops
    from crmd.intake import repeats

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
    from crmd.cli import known
    from crmd.engine import tasks as task_ops

    app.writing("crmd task done")
    with app.store.write() as conn:
        known.check_task(conn, task_id)
        task_ops.done(conn, task_id, app.now, note=note)
    click.echo(f"task {task_id}: done")
