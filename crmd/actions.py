"""Running a rule's actions for a page of fires: ledger rows, tasks, outbox rows, cancels.

Everything here runs inside the engine's page transaction, so a fire and all it does commit
together or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from jinja2 import TemplateError
from sqlalchemy import Connection, Row

from crmd import queries as q
from crmd.conditions import all_hold
from crmd.events import TASK_CANCELLED, TASK_CREATED, TASK_EVENTS
from crmd.rule import CancelAction, EmailAction, Rule, SmsAction, TaskAction
from crmd.site import Site
from crmd.templates import EventFields
from crmd.triggers import due_time

if TYPE_CHECKING:
    from crmd.engine import Candidate, FireRecord

Context = dict[str, Any]
logger = logging.getLogger(__name__)


def record_fields(row: Row[Any] | None) -> dict[str, Any] | None:
    """A customer or vehicle row as template/condition fields; extra attributes included."""
    if row is None:
        return None
    fields = dict(row._mapping)
    attributes = dict(fields.get("attributes") or {})
    merged = {k: v for k, v in attributes.items() if k not in fields}
    fields.update(merged)
    fields["attributes"] = attributes
    fields.pop("birthday_md", None)
    return fields


class ActionWriter:
    """Builds contexts, checks conditions, and writes what fires do."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.site_fields = {"name": site.name, "timezone": str(site.timezone)}

    # ------------------------------------------------------------ contexts

    def _event_fields(self, row: Row[Any]) -> EventFields:
        fields = EventFields(row.data or {})
        fields.update(
            id=row.id,
            type=row.type,
            at=row.at.astimezone(self.site.timezone),
            task_id=row.task_id,
            customer_id=row.customer_id,
            vehicle_id=row.vehicle_id,
        )
        return fields

    def _contexts(
        self,
        conn: Connection,
        items: Sequence[tuple[str | None, str | None, Row[Any] | None]],
    ) -> list[Context]:
        """Contexts for (customer_id, vehicle_id, event) triples, loading rows in bulk."""
        people = q.customers_by_id(conn, {c for c, _, _ in items if c})
        cars = q.vehicles_by_id(conn, {v for _, v, _ in items if v})
        task_ids = {e.task_id for _, _, e in items if e is not None and e.task_id is not None}
        task_rows = q.tasks_by_id(conn, task_ids)
        out = []
        for customer_id, vehicle_id, event in items:
            ctx: Context = {
                "customer": record_fields(people.get(customer_id)) if customer_id else None,
                "vehicle": record_fields(cars.get(vehicle_id)) if vehicle_id else None,
                "event": self._event_fields(event) if event is not None else None,
                "site": self.site_fields,
            }
            if event is not None and event.type in TASK_EVENTS and event.task_id in task_rows:
                task = task_rows[event.task_id]
                ctx["task"] = {
                    "id": task.id,
                    "title": task.title,
                    "role": task.role,
                    "rule": task.rule_id,
                    "due_at": task.due_at.astimezone(self.site.timezone),
                }
            out.append(ctx)
        return out

    def contexts(self, conn: Connection, rows: Sequence[Row[Any]]) -> dict[int, Context]:
        """Contexts for event rows, keyed by event seq."""
        ctxs = self._contexts(conn, [(r.customer_id, r.vehicle_id, r) for r in rows])
        return {r.seq: c for r, c in zip(rows, ctxs, strict=True)}

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
        late_after: timedelta,
    ) -> tuple[list[FireRecord], int]:
        from crmd.engine import FireRecord

        ctxs = self._contexts(conn, [(c.customer_id, c.vehicle_id, c.event) for c in candidates])
        kept = [
            (c, ctx)
            for c, ctx in zip(candidates, ctxs, strict=True)
            if c.conditions_checked or self.conditions_hold(rule, ctx)
        ]
        if not kept:
            return [], 0
        cancelled = self._cancelled_by_unless(conn, rule, [c for c, _ in kept])
        records: list[FireRecord] = []
        for c, ctx in kept:
            ctx["fire"] = {"at": c.fire_at.astimezone(self.site.timezone), "rule": rule.id}
            status, reason = (
                ("cancelled", cancelled[c.key]) if c.key in cancelled else ("fired", "")
            )
            actions: list[dict[str, Any]] = []
            if status == "fired":
                try:
                    actions = self._render(rule, c, ctx)
                except (TemplateError, TypeError, ValueError, AttributeError) as exc:
                    # A template that fails for one subject (say, data it expected is missing)
                    # is recorded as a failed fire, visible in the ledger, and blocks nobody.
                    status, reason = "failed", f"template error: {exc}"
                    logger.error(
                        "rule %s failed for %s: %s",
                        rule.id,
                        c.subject,
                        exc,
                        extra={"rule": rule.id, "subject": c.subject},
                    )
            records.append(
                FireRecord(
                    rule_id=rule.id,
                    key=c.key,
                    subject=c.subject,
                    fire_at=c.fire_at,
                    status=status,
                    late=now - c.fire_at > late_after,
                    customer_id=c.customer_id,
                    vehicle_id=c.vehicle_id,
                    actions=actions,
                    reason=reason,
                )
            )
        fire_ids = q.insert_fires(
            conn,
            [
                {
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
                    "detail": {"actions": _jsonable(r.actions), "reason": r.reason},
                }
                for r, (c, _) in zip(records, kept, strict=True)
            ],
        )
        produced = self._create_tasks(conn, records, fire_ids, now)
        self._queue_messages(conn, records, fire_ids, now)
        produced += self._cancel_tasks(conn, records, fire_ids, now)
        return records, produced

    def _render(self, rule: Rule, c: Candidate, ctx: Context) -> list[dict[str, Any]]:
        tz, cal = self.site.timezone, self.site.calendar
        customer = ctx.get("customer") or {}
        planned: list[dict[str, Any]] = []
        for action in rule.actions:
            if isinstance(action, TaskAction):
                planned.append(
                    {
                        "action": "task",
                        "role": action.role,
                        "title": action.title.render(ctx),
                        "note": action.note.render(ctx) if action.note else "",
                        "available_at": c.fire_at,
                        "due_at": due_time(action.due, c.fire_at, tz, cal),
                    }
                )
            elif isinstance(action, SmsAction):
                planned.append(
                    _message("sms", customer, customer.get("phone"), "", action.text.render(ctx))
                )
            elif isinstance(action, EmailAction):
                to = list(action.to) or [str(customer.get("email") or "")]
                msg = _message(
                    "email",
                    customer if not action.to else {},
                    ", ".join(t for t in to if t),
                    action.subject.render(ctx),
                    action.body.render(ctx),
                )
                planned.append(msg)
            elif isinstance(action, CancelAction):
                planned.append({"action": "cancel", "rules": list(action.rules)})
        return planned

    def _cancelled_by_unless(
        self, conn: Connection, rule: Rule, candidates: Sequence[Candidate]
    ) -> dict[str, str]:
        """Keys of fires that a later event (`unless`) cancelled, with the reason."""
        if rule.unless is None:
            return {}
        column = f"{rule.unless.same}_id"
        anchored = [c for c in candidates if c.event is not None and getattr(c, column)]
        if not anchored:
            return {}
        hits = q.events_for_subjects(
            conn,
            column,
            (getattr(c, column) for c in anchored),
            rule.unless.types,
            min(c.event.at for c in anchored if c.event is not None),
            max(c.fire_at for c in anchored),
        )
        by_subject: dict[str, list[Row[Any]]] = {}
        for hit in hits:
            by_subject.setdefault(getattr(hit, column), []).append(hit)
        out: dict[str, str] = {}
        for c in anchored:
            assert c.event is not None
            for hit in by_subject.get(getattr(c, column), []):
                if c.event.at < hit.at <= c.fire_at:
                    out[c.key] = f"cancelled by {hit.type} {hit.id} at {hit.at.isoformat()}"
                    break
        return out

    def _create_tasks(
        self,
        conn: Connection,
        records: Sequence[FireRecord],
        fire_ids: Sequence[int],
        now: datetime,
    ) -> int:
        rows = []
        for record, fire_id in zip(records, fire_ids, strict=True):
            for a in record.actions:
                if a["action"] == "task":
                    rows.append(
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
                        }
                    )
        if not rows:
            return 0
        ids = q.insert_tasks(conn, rows)
        created = [dict(row, id=task_id) for row, task_id in zip(rows, ids, strict=True)]
        q.insert_events(
            conn, [self.task_event(t, TASK_CREATED, t["available_at"], now) for t in created]
        )
        return len(created)

    def _queue_messages(
        self,
        conn: Connection,
        records: Sequence[FireRecord],
        fire_ids: Sequence[int],
        now: datetime,
    ) -> None:
        rows = []
        for record, fire_id in zip(records, fire_ids, strict=True):
            for a in record.actions:
                if a["action"] in ("sms", "email") and not a.get("skipped"):
                    rows.append(
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
                            "attempts": 0,
                            "created_at": now,
                        }
                    )
        q.insert_outbox(conn, rows)

    def _cancel_tasks(
        self,
        conn: Connection,
        records: Sequence[FireRecord],
        fire_ids: Sequence[int],
        now: datetime,
    ) -> int:
        produced = 0
        for record, fire_id in zip(records, fire_ids, strict=True):
            for a in record.actions:
                if a["action"] != "cancel":
                    continue
                open_tasks = [
                    t
                    for t in q.open_tasks_of_rules(
                        conn, a["rules"], record.customer_id, record.vehicle_id
                    )
                    # Only tasks made before this fire: never the ones it (or a later fire
                    # of the same page) has just created.
                    if t.fire_id is None or t.fire_id < fire_id
                ]
                a["cancelled"] = [t.id for t in open_tasks]
                if open_tasks:
                    q.close_tasks(
                        conn, a["cancelled"], "cancelled", now, f"cancelled by {record.key}"
                    )
                    q.insert_events(
                        conn,
                        [
                            self.task_event(t, TASK_CANCELLED, record.fire_at, now)
                            for t in open_tasks
                        ],
                    )
                    produced += len(open_tasks)
        return produced

    @staticmethod
    def task_event(
        task: Mapping[str, Any] | Row[Any],
        event_type: str,
        at: datetime,
        now: datetime,
        suffix: str = "",
        **data: Any,
    ) -> dict[str, Any]:
        """The event row for a task lifecycle change (so rules can chain on it)."""
        t = task if isinstance(task, Mapping) else task._mapping
        name = event_type.split(".", 1)[1]
        return {
            "id": f"task:{t['id']}:{name}{suffix}",
            "type": event_type,
            "at": at,
            "customer_id": t["customer_id"],
            "vehicle_id": t["vehicle_id"],
            "task_id": t["id"],
            "data": {"rule": t["rule_id"], "role": t["role"], **data},
            "recorded_at": now,
        }


def _message(
    channel: str, customer: Mapping[str, Any], to: str | None, subject: str, text: str
) -> dict[str, Any]:
    msg: dict[str, Any] = {"action": channel, "to": to or "", "subject": subject, "text": text}
    if customer.get("opt_out"):
        msg["skipped"] = "customer opted out"
    elif not to:
        msg["skipped"] = "no phone number" if channel == "sms" else "no e-mail address"
    return msg


def _jsonable(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for a in actions:
        out.append(
            {
                k: (v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v)
                for k, v in a.items()
            }
        )
    return out
