"""Writing a page's new fires: those the ledger does not hold yet, each with its actions.

A rule that fires for every customer (`for_each: customer`) writes its page a part of the
customers at a time, each part but the last committed on its own, so a greeting to every
customer of a large store holds no more than a page of them in one transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from crmd.engine.actions import ActionWriter
from crmd.engine.candidates import Candidate, fan_out
from crmd.engine.paging import Page
from crmd.engine.report import TickReport
from crmd.rules.rule import Rule
from crmd.store import ledger
from crmd.store import queries as q

# A fire recorded more than this after its time is marked late (the daemon was down, or
# the event arrived late).
LATE_AFTER = timedelta(minutes=15)


def apply_fires(
    txn: Page,
    writer: ActionWriter,
    rule: Rule,
    candidates: list[Candidate],
    now: datetime,
    report: TickReport,
    since: datetime | None = None,
) -> int:
    """Record the new fires of one page and run their actions, in the page's transaction.

    Fires at or before `since`, when the rule came into force, are taken over: only what
    is still of use of them is done (crmd.engine.takeover).

    A rule that fires for each customer writes a part of the customers at a time, each
    part but the last committed on its own (`txn.commit()`); the caller saves the rule's
    progress in the last part only.

    Returns how many events this produced (task events), so chained rules get another round.
    """
    if not candidates:
        return 0
    if getattr(rule.trigger, "for_each", None) != "customer":
        return _write_new(txn, writer, rule, candidates, now, report, since)
    produced = 0
    last = ""
    while True:
        per_part = max(1, txn.size // len(candidates))
        people = q.customers_page(txn.conn, last, per_part)
        part = fan_out(candidates, people)
        txn.rows = len(part)
        produced += _write_new(txn, writer, rule, part, now, report, since)
        if len(people) < per_part:
            return produced
        last = people[-1].id
        txn.commit()


def _write_new(
    txn: Page,
    writer: ActionWriter,
    rule: Rule,
    candidates: list[Candidate],
    now: datetime,
    report: TickReport,
    since: datetime | None = None,
) -> int:
    """Write the fires of these candidates the ledger does not hold yet."""
    done = ledger.existing_fire_keys(txn.conn, (c.key for c in candidates))
    fresh: dict[str, Candidate] = {}
    for c in candidates:
        if c.key not in done and c.key not in fresh:
            fresh[c.key] = c
    if not fresh:
        return 0
    history = writer.history
    records, produced = writer.write(
        txn.conn,
        rule,
        list(fresh.values()),
        now,
        report.late_as_of or now,
        LATE_AFTER,
        taken_over_upto=since,
    )
    report.history += writer.history - history
    txn.fires.extend(records)
    return produced
