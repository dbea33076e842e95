"""What one fire does: it fires with its rendered actions, or it is cancelled, skipped or
failed, and its record says why.

Deciding is apart from writing (crmd.engine.actions): this reads the store (a later event
that cancels a fire, a vehicle's mileage for a projected date) but writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from jinja2 import TemplateError
from sqlalchemy import Connection, Row

from crmd.calendar.offsets import parse_offset
from crmd.engine.candidates import Candidate
from crmd.engine.contexts import Context
from crmd.engine.projection import km_reached_on
from crmd.engine.rendering import render_actions
from crmd.engine.report import FireRecord
from crmd.engine.takeover import hours
from crmd.rules.rule import Rule
from crmd.site import Site
from crmd.store import queries as q


def fire_record(
    rule: Rule,
    c: Candidate,
    late_as_of: datetime,
    late_after: timedelta,
    status: str,
    reason: str = "",
) -> FireRecord:
    """A fire's record, before its actions are worked out."""
    return FireRecord(
        rule_id=rule.id,
        key=c.key,
        subject=c.subject,
        fire_at=c.fire_at,
        status=status,
        late=max(late_as_of, c.fire_at) - c.fire_at > late_after,
        customer_id=c.customer_id,
        vehicle_id=c.vehicle_id,
        reason=reason,
    )


def decide(
    conn: Connection,
    site: Site,
    rule: Rule,
    c: Candidate,
    ctx: Context,
    cancelled_by: str | None,
    late_as_of: datetime,
    late_after: timedelta,
) -> FireRecord:
    """What one fire whose conditions hold does: its record, with its rendered actions if it
    fires, or why it is cancelled, skipped or failed."""
    ctx["fire"] = {"at": c.fire_at.astimezone(site.timezone), "rule": rule.id}
    lateness = max(late_as_of, c.fire_at) - c.fire_at
    record = fire_record(rule, c, late_as_of, late_after, "fired")
    if cancelled_by is not None:
        record.status, record.reason = "cancelled", cancelled_by
        return record
    if rule.late and lateness > rule.late.skip_after:
        # Too late to be of use (a birthday SMS days after the birthday): recorded,
        # never sent, and never tried again.
        record.status = "skipped"
        record.reason = f"{hours(lateness)} late; the rule skips after " + hours(
            rule.late.skip_after
        )
        return record
    if c.customer_id and ctx.get("customer") is None:
        record.status = "failed"
        record.reason = (
            f"customer {c.customer_id} is not in the store; import it (crmd import FILE "
            f"--kind customers) and the next tick makes this fire"
        )
        return record
    record.actions = render_actions(rule, c.fire_at, ctx, site)
    problem, default_helps = _undeliverable(record.actions)
    if problem and not any(a["action"] == "task" for a in record.actions):
        # Nothing of it can be done: kept as failed, made once the data is there.
        record.status, record.actions = "failed", []
        record.reason = (
            f"{problem}: fill in the customer's data (crmd import FILE --kind customers) "
            f"and the next tick makes this fire"
        )
        if default_helps:
            record.reason += (
                ", or give the template a default (`{{ customer.name | default('客户') }}`)"
            )
        return record
    _resolve_dates(conn, site, record)
    record.warnings = _warnings(record, lateness)
    if problem:
        # The task is made all the same; the message is not sent, and the task says so.
        record.warnings.append(f"not sent: {problem}")
    return record


def cancelled_by_unless(
    conn: Connection, rule: Rule, candidates: Sequence[Candidate]
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


def _resolve_dates(conn: Connection, site: Site, record: FireRecord) -> None:
    """Work out the dates a fire's `set` actions store, projecting mileage where asked
    (P12)."""
    tz, cal = site.timezone, site.calendar
    for a in record.actions:
        if a["action"] != "set":
            continue
        day = record.fire_at.astimezone(tz).date()
        value = parse_offset(a["after"]).move_date(day, cal)
        if a["km"] and record.vehicle_id:
            readings = q.mileage_readings(conn, record.vehicle_id, q.max_event_seq(conn))
            by_km = km_reached_on(day, a["km"], readings)
            if by_km is not None and by_km < value:
                value = by_km
        a["date"] = value.isoformat()


def _undeliverable(actions: Sequence[dict[str, Any]]) -> tuple[str, bool]:
    """Why a fire's message to its customer cannot go out ("" if it can), and whether a
    template default would mend it: the customer has no number or address, or the message
    would show a placeholder for missing data. Such a message is marked `skipped`, so it
    is never queued."""
    problems = []
    default_helps = False
    for a in actions:
        if a["action"] not in ("sms", "email") or not a.get("to_customer"):
            continue
        what = "SMS" if a["action"] == "sms" else "e-mail"
        if a.get("skipped") in ("no phone number", "no e-mail address"):
            problems.append(f"the customer has {a['skipped']} for the {what}")
        elif a.get("missing") and not a.get("skipped"):
            names = ", ".join(a["missing"])
            a["skipped"] = f"it would show placeholders for missing {names}"
            problems.append(f"the {what} would show placeholders for missing {names}")
            default_helps = True
    return "; ".join(problems), default_helps


def _warnings(record: FireRecord, lateness: timedelta) -> list[str]:
    """What the person doing a fire's task should know: missing data, and lateness."""
    warnings = []
    missing = [m for a in record.actions if a["action"] == "task" for m in a.get("missing", ())]
    if missing:
        warnings.append(f"missing data: {', '.join(dict.fromkeys(missing))}")
    if record.late:
        warnings.append(f"made {hours(lateness)} after its time")
    return warnings


def error_reason(exc: Exception) -> str:
    """A failed fire's reason for an error raised while working it out."""
    kind = "template error" if isinstance(exc, TemplateError) else type(exc).__name__
    return (
        f"{kind}: {exc}; fix the rule (crmd check, crmd reload) or the data, then crmd fires retry"
    )
