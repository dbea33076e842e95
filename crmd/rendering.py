"""Working out what a fire does: each action rendered into a plain record, without I/O.

The records go into the ledger as the fire's detail, are what `plan` prints, and are what
crmd/actions.py writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from crmd.contexts import Context, lookup
from crmd.rule import (
    CancelAction,
    CompleteAction,
    EmailAction,
    EmitAction,
    Rule,
    SetDateAction,
    SmsAction,
    TaskAction,
)
from crmd.site import Site
from crmd.triggers import due_time

# A task's due time depends only on its rule's `due`, the fire time, the zone and the
# calendar, and a page of fires shares a few fire times: each is worked out once (in UTC,
# where equal times are the same instant; local times of a repeated hour are not).
_due_time = lru_cache(maxsize=1024)(due_time)


def render_actions(rule: Rule, fire_at: datetime, ctx: Context, site: Site) -> list[dict[str, Any]]:
    """One record per action; raises a template error if a template cannot render."""
    tz, cal = site.timezone, site.calendar
    customer = ctx.get("customer") or {}
    planned: list[dict[str, Any]] = []
    for action in rule.actions:
        if isinstance(action, TaskAction):
            role = action.role
            if not isinstance(role, str):
                role = role.pick(lookup(ctx, role.field))
            planned.append(
                {
                    "action": "task",
                    "role": role,
                    "title": action.title.render(ctx),
                    "note": action.note.render(ctx) if action.note else "",
                    "available_at": fire_at,
                    "due_at": _due_time(action.due, fire_at.astimezone(UTC), tz, cal),
                }
            )
        elif isinstance(action, SmsAction):
            text = action.text.render(ctx)
            planned.append(message("sms", customer, customer.get("phone"), "", text))
        elif isinstance(action, EmailAction):
            to = list(action.to) or [str(customer.get("email") or "")]
            planned.append(
                message(
                    "email",
                    customer if not action.to else {},
                    ", ".join(t for t in to if t),
                    action.subject.render(ctx),
                    action.body.render(ctx),
                )
            )
        elif isinstance(action, CancelAction):
            rules = list(action.rules)
            if action.matching is not None:
                wanted = lookup(ctx, action.matching)
                rules = [r for r in rules if r == wanted]
            kind = "complete" if isinstance(action, CompleteAction) else "cancel"
            planned.append({"action": kind, "rules": rules})
        elif isinstance(action, SetDateAction):
            planned.append(
                {
                    "action": "set",
                    "field": action.field,
                    "after": str(action.after),
                    "km": action.km,
                }
            )
        elif isinstance(action, EmitAction):
            data = {key: template.render(ctx) for key, template in action.data}
            planned.append({"action": "emit", "event": action.event, "data": data})
    return planned


def message(
    channel: str, customer: Mapping[str, Any], to: str | None, subject: str, text: str
) -> dict[str, Any]:
    """An SMS or e-mail record; one that must not go out says why in `skipped`."""
    msg: dict[str, Any] = {
        "action": channel,
        "to": to or "",
        "subject": subject,
        "text": text,
        "to_customer": bool(customer),
    }
    if customer.get("opt_out"):
        msg["skipped"] = "customer opted out"
    elif not to:
        msg["skipped"] = "no phone number" if channel == "sms" else "no e-mail address"
    return msg
