"""Running a rule's actions for a page of fires: ledger rows, tasks, outbox rows, cancels.

What each fire does (fired, cancelled, skipped or failed) is decided in crmd.engine.outcomes;
this writes it. Everything here runs inside the engine's page transaction, so a fire and all
it does commit together or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row

from crmd.engine.candidates import Candidate
from crmd.engine.contexts import Context, ContextBuilder
from crmd.engine.fieldneeds import Needs, fields_needed
from crmd.engine.outcomes import cancelled_by_unless, decide, error_reason, fire_record
from crmd.engine.report import FireRecord
from crmd.engine.takeover import take_over
from crmd.engine.taskevents import task_event
from crmd.errors import CalendarNotPublished
from crmd.events import TASK_CANCELLED, TASK_CREATED, TASK_DONE
from crmd.rules.conditions import all_hold
from crmd.rules.rule import Rule
from crmd.site import Site
from crmd.store import ledger, work
from crmd.store import queries as q
from crmd.store.database import NOT_THE_RULES

logger = logging.getLogger(__name__)

# What a fire lets through rather than failing alone: the store's, the machine's or a
# stop's trouble, and a calendar year not known (that fails the whole rule, which waits).
NOT_ONE_FIRES: tuple[type[BaseException], ...] = (*NOT_THE_RULES, CalendarNotPublished)


class ActionWriter:
    """Builds contexts, checks conditions, and writes what fires do."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.builder = ContextBuilder(site)
        self._needs: dict[Rule, Needs] = {}
        # Fires found that fell due before their rule came into force, with only tasks whose
        # window had closed: history, counted (crmd.engine.takeover) and not recorded.
        self.history = 0

    def needs(self, rule: Rule) -> Needs:
        """The customer and vehicle columns this rule's fires read (worked out once)."""
        if rule not in self._needs:
            self._needs[rule] = fields_needed(rule)
        return self._needs[rule]

    def contexts(
        self, conn: Connection, rule: Rule, rows: Sequence[Row[Any]]
    ) -> dict[int, Context]:
        """Contexts for event rows, keyed by event seq, with what `rule` reads."""
        return self.builder.for_events(conn, rows, self.needs(rule))

    @staticmethod
    def conditions_hold(rule: Rule, context: Mapping[str, Any]) -> bool:
        return all_hold(rule.conditions, context)

    # ------------------------------------------------------------ writing fires

    def write(
        self,
        conn: Connection,
        rule: Rule,
        candidates: Sequence[Candidate],
        now: datetime,
        late_as_of: datetime,
        late_after: timedelta,
        *,
        taken_over_upto: datetime | None = None,
        retrying: Mapping[str, int] | None = None,
    ) -> tuple[list[FireRecord], int]:
        """Record these fires in the ledger and run their actions; returns the records and
        how many events they produced.

        `taken_over_upto`: fires at or before it fell due before the rule came into force
        (crmd's first evaluation of a site, or history keyed in later): only what is still
        actionable is done (crmd.engine.takeover). `retrying` maps the keys of failed fires being
        tried again (crmd.store.ledger) to their ledger ids: those rows are updated, not inserted.
        """
        retrying = retrying or {}
        ctxs = self.builder.build(
            conn, [(c.customer_id, c.vehicle_id, c.event) for c in candidates], self.needs(rule)
        )
        pairs: list[tuple[Candidate, FireRecord]] = []
        held: list[tuple[Candidate, Context]] = []
        for c, ctx in zip(candidates, ctxs, strict=True):
            if c.conditions_checked or self.conditions_hold(rule, ctx):
                held.append((c, ctx))
            elif c.key in retrying:
                reason = "the rule's conditions no longer hold"
                pairs.append((c, fire_record(rule, c, late_as_of, late_after, "skipped", reason)))
        # Only fires whose conditions hold are asked whether a later event cancelled them.
        cancelled = cancelled_by_unless(conn, rule, [c for c, _ in held])
        for c, ctx in held:
            try:
                record = decide(
                    conn, self.site, rule, c, ctx, cancelled.get(c.key), late_as_of, late_after
                )
                if taken_over_upto and c.fire_at <= taken_over_upto:
                    written = max(late_as_of, c.fire_at)
                    if not take_over(rule, record, written, self.site.timezone):
                        self.history += 1
                        continue
            except NOT_ONE_FIRES:
                # The store's or the machine's trouble, or the rule's own (a calendar year
                # not known fails the rule, which stays where it is until the year is
                # supplied): the page rolls back.
                raise
            except Exception as exc:
                # One fire's trouble (a template raising on its data) is that fire's alone:
                # it is kept as failed, and the tick goes on.
                record = fire_record(rule, c, late_as_of, late_after, "failed", error_reason(exc))
                # The reason is in the ledger (`crmd fires --failed`); the traceback, for a
                # programmer, only at debug level: a retried fire would repeat it each time.
                logger.error(
                    "rule %s failed for %s: %s",
                    rule.id,
                    c.subject,
                    record.reason,
                    exc_info=logger.isEnabledFor(logging.DEBUG),
                    extra={"rule": rule.id, "subject": c.subject},
                )
            pairs.append((c, record))
        if not pairs:
            return [], 0
        fire_ids = self._ledger_rows(conn, pairs, retrying, now)
        kept = [(r, fire_id) for (_, r), fire_id in zip(pairs, fire_ids, strict=True) if fire_id]
        records = [r for r, _ in kept]
        ids = [fire_id for _, fire_id in kept]
        produced = self._create_tasks(conn, records, ids, now)
        self._queue_messages(conn, records, ids, now)
        produced += self._close_tasks(conn, records, ids, now)
        self._store_dates(conn, records, now)
        produced += self._emit_events(conn, records, ids, now)
        return records, produced

    @staticmethod
    def _ledger_rows(
        conn: Connection,
        pairs: Sequence[tuple[Candidate, FireRecord]],
        retrying: Mapping[str, int],
        now: datetime,
    ) -> list[int]:
        """Insert the ledger rows of new fires, update those of failed ones tried again.

        Returns each fire's ledger id, or 0 for a retried fire another daemon has just
        done (its row is no longer failed): that fire does nothing here.
        """

        def row(c: Candidate, r: FireRecord) -> dict[str, Any]:
            detail: dict[str, Any] = {"actions": r.actions, "reason": r.reason}
            if r.warnings:
                detail["warnings"] = r.warnings
            return {
                "key": r.key,
                "rule_id": r.rule_id,
                "subject": r.subject,
                "customer_id": r.customer_id,
                "vehicle_id": r.vehicle_id,
                "event_seq": c.event.seq if c.event is not None else None,
                "fire_at": r.fire_at,
                "recorded_at": now,
                "status": r.status,
                "late": r.late,
                # Times in the actions are stored as ISO text in UTC (bulkwrite.json_text).
                "detail": detail,
            }

        fresh = [row(c, r) for c, r in pairs if r.key not in retrying]
        new_ids = iter(ledger.insert_fires(conn, fresh))
        ids = []
        for c, r in pairs:
            if r.key in retrying:
                fire_id = retrying[r.key]
                ids.append(fire_id if ledger.update_failed(conn, fire_id, row(c, r)) else 0)
            else:
                ids.append(next(new_ids))
        return ids

    def _create_tasks(
        self,
        conn: Connection,
        records: Sequence[FireRecord],
        fire_ids: Sequence[int],
        now: datetime,
    ) -> int:
        rows = [
            {
                "fire_id": fire_id,
                "rule_id": record.rule_id,
                "role": a["role"],
                "title": a["title"],
                "note": a["note"],
                "customer_id": record.customer_id,
                "vehicle_id": record.vehicle_id,
                "available_at": a["available_at"],
                "due_at": a["due_at"],
                "status": "open",
                "overdue": False,
                "attempts": 0,
                "created_at": now,
                "warning": "; ".join(record.warnings) or None,
            }
            for record, fire_id, a in _actions_of(records, fire_ids, "task")
            if not a.get("skipped")
        ]
        if not rows:
            return 0
        ids = work.insert_tasks(conn, rows)
        created = [dict(row, id=task_id) for row, task_id in zip(rows, ids, strict=True)]
        for t in created if logger.isEnabledFor(logging.INFO) else ():
            logger.info(
                "task %s created by %s for %s: %s, due %s",
                t["id"],
                t["rule_id"],
                t["customer_id"] or "site",
                t["role"],
                t["due_at"].isoformat(),
                extra={"rule": t["rule_id"], "task": t["id"]},
            )
        q.insert_events(
            conn, [task_event(t, TASK_CREATED, t["available_at"], now) for t in created]
        )
        return len(created)

    def _queue_messages(
        self,
        conn: Connection,
        records: Sequence[FireRecord],
        fire_ids: Sequence[int],
        now: datetime,
    ) -> None:
        rows = [
            {
                "fire_id": fire_id,
                "rule_id": record.rule_id,
                "channel": a["action"],
                "customer_id": record.customer_id,
                "recipient": a["to"],
                "subject": a.get("subject", ""),
                "body": a["text"],
                "status": "queued",
                "not_before": record.fire_at,
                "next_attempt_at": record.fire_at,
                "to_customer": bool(a.get("to_customer")),
                "attempts": 0,
                "created_at": now,
            }
            for record, fire_id, a in _actions_of(records, fire_ids, "sms", "email")
            if not a.get("skipped")
        ]
        work.insert_outbox(conn, rows)
        for row in rows:
            # The formatter masks the recipient's phone number or address.
            logger.info(
                "message queued by %s for %s: %s to %s",
                row["rule_id"],
                row["customer_id"] or "site",
                row["channel"],
                row["recipient"],
                extra={"rule": row["rule_id"], "subject": row["customer_id"]},
            )

    def _store_dates(self, conn: Connection, records: Sequence[FireRecord], now: datetime) -> None:
        for record in records:
            for a in record.actions:
                if a["action"] != "set":
                    continue
                scope, _, name = a["field"].partition(".")
                subject = record.vehicle_id if scope == "vehicle" else record.customer_id
                if subject:
                    q.set_date(
                        conn,
                        scope,
                        subject,
                        name,
                        date.fromisoformat(a["date"]),
                        record.customer_id,
                        now,
                        record.key,
                    )

    def _emit_events(
        self,
        conn: Connection,
        records: Sequence[FireRecord],
        fire_ids: Sequence[int],
        now: datetime,
    ) -> int:
        rows = [
            {
                "id": f"fire:{fire_id}:{n}",
                "type": a["event"],
                "at": record.fire_at,
                "customer_id": record.customer_id,
                "vehicle_id": record.vehicle_id,
                "task_id": None,
                "data": {"rule": record.rule_id, **a["data"]},
                "recorded_at": now,
            }
            for n, (record, fire_id, a) in enumerate(_actions_of(records, fire_ids, "emit"))
        ]
        q.insert_events(conn, rows)
        return len(rows)

    def _close_tasks(
        self,
        conn: Connection,
        records: Sequence[FireRecord],
        fire_ids: Sequence[int],
        now: datetime,
    ) -> int:
        produced = 0
        for record, fire_id in zip(records, fire_ids, strict=True):
            for a in record.actions:
                if a["action"] not in ("cancel", "complete"):
                    continue
                status = "cancelled" if a["action"] == "cancel" else "done"
                kind = TASK_CANCELLED if status == "cancelled" else TASK_DONE
                open_tasks = [
                    t
                    for t in work.open_tasks_of_rules(
                        conn, a["rules"], record.customer_id, record.vehicle_id
                    )
                    # Only tasks made before this fire: never the ones it (or a later fire
                    # of the same page) has just created.
                    if t.fire_id is None or t.fire_id < fire_id
                ]
                a["closed"] = [t.id for t in open_tasks]
                if open_tasks:
                    work.close_tasks(conn, a["closed"], status, now, f"{status} by {record.key}")
                    q.insert_events(
                        conn,
                        [task_event(t, kind, record.fire_at, now) for t in open_tasks],
                    )
                    produced += len(open_tasks)
        return produced


def _actions_of(
    records: Sequence[FireRecord], fire_ids: Sequence[int], *kinds: str
) -> Iterator[tuple[FireRecord, int, dict[str, Any]]]:
    """Each action of these kinds, with its fire and the fire's ledger id."""
    for record, fire_id in zip(records, fire_ids, strict=True):
        for a in record.actions:
            if a["action"] in kinds:
                yield record, fire_id, a
