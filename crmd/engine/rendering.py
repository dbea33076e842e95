"""Working out what a fire does: each action rendered into a plain record, without I/O.

The records go into the ledger as the fire's detail, are what `plan` prints, and are what
crmd/engine/actions.py writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from crmd.engine.contexts import Context, lookup
from crmd.engine.triggers import due_time
from crmd.rules.placeholders import for_rendering, noting_missing
from crmd.rules.rule import (
    Action,
    CancelAction,
    CompleteAction,
    EmailAction,
    Rule,
    SetDateAction,
    SmsAction,
    TaskAction,
)
from crmd.site import Site

# A task's due time depends only on its rule's `due`, the fire time, the zone and the
# calendar, and a page of fires shares a few fire times: each is worked out once (in UTC,
# where equal times are the same instant; local times of a repeated hour are not).
_due_time = lru_cache(maxsize=1024)(due_time)


def render_actions(rule: Rule, fire_at: datetime, ctx: Context, site: Site) -> list[dict[str, Any]]:
    """One record per action; raises if a template cannot render at all.

    A value the store does not have renders as a placeholder (crmd.rules.placeholders); an
    action that rendered one lists the names in `missing`.
    """
    shown = for_rendering(ctx)
    planned: list[dict[str, Any]] = []
    for action in rule.actions:
        with noting_missing() as missing:
            record = _render_action(action, fire_at, ctx, shown, site)
        if missing:
            record["missing"] = missing
        planned.append(record)
    return planned


def _render_action(
    action: Action, fire_at: datetime, ctx: Context, shown: Context, site: Site
) -> dict[str, Any]:
    """One action's record; `ctx` for conditions and roles, `shown` for templates."""
    tz, cal = site.timezone, site.calendar
    customer = ctx.get("customer") or {}
    if isinstance(action, TaskAction):
        role = action.role
        if not isinstance(role, str):
            role = role.pick(lookup(ctx, role.field))
        return {
            "action": "task",
            "role": role,
            "title": action.title.render(shown),
            "note": action.note.render(shown) if action.note else "",
            "available_at": fire_at,
            "due_at": _due_time(action.due, fire_at.astimezone(UTC), tz, cal),
        }
    if isinstance(action, SmsAction):
        text = action.text.render(shown)
        return message("sms", customer, customer.get("phone"), "", text)
    if isinstance(action, EmailAction):
        to = list(action.to) or [str(customer.get("email") or "")]
        return message(
            "email",
            customer if not action.to else {},
            ", ".join(t for t in to if t),
            action.subject.render(shown),
            action.body.render(shown),
        )
    if isinstance(action, CancelAction):
        rules = list(action.rules)
        if action.matching is not None:
            wanted = lookup(ctx, action.matching)
            rules = [r for r in rules if r == wanted]
        kind = "complete" if isinstance(action, CompleteAction) else "cancel"
        return {"action": kind, "rules": rules}
    if isinstance(action, SetDateAction):
        return {"action": "set", "field": action.field, "after": str(action.after), "km": action.km}
    data = {key: template.render(shown) for key, template in action.data}
    return {"action": "emit", "event": action.event, "data": data}


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
