"""The whole `crmd` command: the root group of crmd.cli.main with every command family.

One module per family, each thin (parse, call one function, print):

    evaluate     check, tick, plan
    intake       import, event, demo
    work         tasks, task attempt, task done
    fires        fires, fires retry, fires dismiss
    outbox       outbox, outbox retry, outbox cancel, outbox send
    operations   run, reload, status, sites
"""

from __future__ import annotations

from crmd.cli import evaluate, fires, intake, operations, outbox, work
from crmd.cli.main import main

for command in (
    evaluate.check,
    intake.import_,
    intake.event,
    evaluate.tick,
    evaluate.plan,
    work.tasks_,
    work.task,
    operations.run,
    operations.reload,
    operations.status,
    operations.sites,
    intake.demo,
    outbox.outbox,
    fires.fires,
):
    main.add_command(command)

__all__ = ["main"]
