"""Day one: what a rule takes over from before it came into force.

A new site loads its DMS history and then starts crmd. A person taking over the job would
call the buyers still inside their N+3..N+5 window (P1) rather than none of them, would not
call those whose window closed weeks ago, and would not send yesterday's birthday SMS. So,
on the first tick of a site, each rule looks back as far as one of its fires could still be
of use (`reach`) and, for each fire that fell due before the rule came into force (its
`since`), keeps only what is still actionable (`take_over`). State computed from history
(P12's next maintenance, set by `set` actions) is computed from all of it.

The same holds for an event that arrives later but fell due before its rule came into
force (history keyed in after day one): what is still of use is done. A rule added later
to a running site starts when it is first seen, unless it asks for a `backfill`.
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from crmd.engine.report import FireRecord
from crmd.engine.triggers import ALIGN_SLACK
from crmd.rules.rule import (
    Due,
    EmailAction,
    EmitAction,
    EventTrigger,
    Rule,
    SetDateAction,
    SmsAction,
    TaskAction,
)

DAY = timedelta(days=1)
# A message that fell due before its rule came into force is sent up to this late when the
# rule sets no lateness of its own (`late: {skip_after: ...}`).
TAKEN_OVER_MESSAGES = DAY


def reach(rule: Rule) -> timedelta | None:
    """How far before it came into force a rule's fire may still be of use; None: all of
    history (a rule that computes state, such as the next maintenance date)."""
    if isinstance(rule.trigger, EventTrigger) and rule.trigger.count is not None:
        return timedelta(0)  # counts only what happens from now on (P4's attempts)
    if any(isinstance(a, SetDateAction) for a in rule.actions):
        return None
    # Closing open tasks (cancel, complete) needs no history.
    longest = timedelta(0)
    for action in rule.actions:
        if isinstance(action, TaskAction):
            longest = max(longest, _due_span(action.due))
        elif isinstance(action, SmsAction | EmailAction | EmitAction):
            # A day beyond the lateness allowed, so that the ones just missed are listed.
            allowed = rule.late.skip_after if rule.late else TAKEN_OVER_MESSAGES
            longest = max(longest, allowed + DAY)
    if rule.late is not None:
        # Beyond its lateness a fire is skipped whole, whatever it does.
        longest = min(longest, rule.late.skip_after + DAY)
    return longest


def _due_span(due: Due | None) -> timedelta:
    """The most time from a fire to its task's due time."""
    if due is None:
        return DAY
    if due.day is not None:
        return timedelta(days=62)  # the given day of this month or of the next
    span = due.after.bounds()[1] if due.after is not None else timedelta(0)
    return span + (ALIGN_SLACK if due.at is not None else timedelta(0))


def take_over(rule: Rule, record: FireRecord, written: datetime, tz: tzinfo) -> bool:
    """Keep of a fire that fell due before its rule came into force what is still of use;
    False when nothing of it is, and it is left out of the ledger.

    A task whose window is still open is made (late, and it says so); one whose window has
    closed is history and is not. A message whose moment passed longer ago than the rule's
    lateness (a day for a rule that sets none) is not sent, and the fire is recorded as
    skipped, with the reason, so that the message nobody got is listed.
    """
    if record.status != "fired":
        return True
    lateness = written - record.fire_at
    allowed = rule.late.skip_after if rule.late else TAKEN_OVER_MESSAGES
    closed: list[str] = []
    for a in record.actions:
        if a["action"] == "task" and a["due_at"] <= written:
            closed_at = f"{a['due_at'].astimezone(tz):%Y-%m-%d %H:%M}"
            a["skipped"] = f"its window closed at {closed_at}"
            closed.append(f"the task's window closed at {closed_at}")
        elif a["action"] in ("sms", "email") and not a.get("skipped") and lateness > allowed:
            a["skipped"] = f"{hours(lateness)} late; messages are sent up to {hours(allowed)}"
            closed.append(f"the {a['action']} would be {a['skipped']}")
    if closed and all(a.get("skipped") for a in record.actions):
        if all(a["action"] == "task" for a in record.actions):
            return False  # only tasks whose window closed before the rule: history
        record.status = "skipped"
        record.reason = "it fell due before crmd began evaluating this rule: " + "; ".join(closed)
        record.warnings = []
    elif record.late:
        record.warnings = [w for w in record.warnings if not w.startswith("made ")]
        record.warnings.append(
            f"made {hours(lateness)} after its time, which was before this rule came into force"
        )
    return True


def hours(span: timedelta) -> str:
    """A lateness in words: '3 days 2 hours', '45 minutes'."""
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours_, minutes = divmod(rest, 60)
    parts = [(days, "day"), (hours_, "hour"), (minutes, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n]
    return " ".join(words[:2]) or "0 minutes"
