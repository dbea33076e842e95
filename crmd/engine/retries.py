"""Failed fires tried again: those whose customer or vehicle changed since their last try,
every one (a new rule set), or those a user names (`crmd fires retry`).

A retried fire updates its own ledger row (crmd.store.ledger), so it still happens once. A
fire whose rule is gone or disabled stays failed, for `crmd fires dismiss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from crmd.engine.actions import ActionWriter
from crmd.engine.candidates import Candidate
from crmd.engine.new_fires import LATE_AFTER
from crmd.engine.paging import OpenPage
from crmd.engine.report import TickReport
from crmd.errors import CalendarNotPublished
from crmd.rules.rule import Rule
from crmd.store import ledger, watermarks


def retry_failed(
    open_page: OpenPage,
    writer: ActionWriter,
    rules: Sequence[Rule],
    now: datetime,
    report: TickReport,
    *,
    every: bool = False,
    ids: Sequence[int] = (),
) -> int:
    """Try again the failed fires of these rules, a page at a time: those whose customer or
    vehicle changed since their last try, or `every` one, or those of `ids`. Returns the
    events they produced."""
    by_id = {r.id: r for r in rules}
    produced = 0
    after = 0
    while True:
        with open_page() as txn:
            rows = ledger.failed_to_retry(
                txn.conn, after_id=after, limit=txn.size, every=every, ids=ids
            )
            txn.rows = len(rows)
            if not rows:
                return produced
            after = rows[-1].id
            anchors = ledger.events_by_seq(txn.conn, (r.event_seq for r in rows if r.event_seq))
            states = watermarks.load_rule_states(txn.conn)
            retrying: dict[str, int] = {}
            by_rule: dict[str, list[Candidate]] = {}
            for row in rows:
                rule = by_id.get(row.rule_id)
                if rule is None or row.rule_id not in states:
                    continue
                candidate = Candidate(
                    rule,
                    row.key,
                    row.fire_at,
                    row.subject,
                    customer_id=row.customer_id,
                    vehicle_id=row.vehicle_id,
                    event=anchors.get(row.event_seq),
                )
                # A count's conditions held over the whole history when it was found.
                candidate.conditions_checked = getattr(rule.trigger, "count", None) is not None
                by_rule.setdefault(rule.id, []).append(candidate)
                retrying[row.key] = row.id
            for rule_id, candidates in by_rule.items():
                try:
                    records, made = writer.write(
                        txn.conn,
                        by_id[rule_id],
                        candidates,
                        now,
                        report.late_as_of or now,
                        LATE_AFTER,
                        # Not taken over again: it was owed when it failed, and is
                        # made however late, as any late fire.
                        retrying=retrying,
                    )
                except CalendarNotPublished:
                    # Raised before the write wrote anything: these stay failed, and
                    # the rule's own evaluation reports the calendar (crmd.engine.evaluation).
                    continue
                report.retried += len(records)
                txn.fires.extend(records)
                produced += made
        if len(rows) < txn.size:
            return produced
