"""Where a rule's evaluation starts and resumes: when a new rule comes into force, where its
watermark starts, and where a schedule whose time moved resumes.

The engine stores these with each rule's state (crmd.store.watermarks); this only works
them out.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

from crmd.calendar.schedules import once_a_day
from crmd.engine.takeover import reach
from crmd.engine.triggers import EPOCH
from crmd.rules.rule import Rule, ScheduleTrigger


def fingerprint(rule: Rule) -> str:
    """A schedule rule's schedule in words, stored with its state to notice a change."""
    trigger = rule.trigger
    return trigger.schedule.describe()[:300] if isinstance(trigger, ScheduleTrigger) else ""


def comes_into_force(rule: Rule, now: datetime) -> datetime:
    """When a rule seen for the first time comes into force: now, unless it asks for a
    backfill (then its fires in the backfill's span are due as any other)."""
    if rule.backfill is None:
        return now
    if rule.backfill.span is not None:
        return now - rule.backfill.span
    return EPOCH


def first_watermark(rule: Rule, start: datetime, now: datetime, *, day_one: bool) -> datetime:
    """Where a new rule's watermark starts: where it comes into force (`start`), or on day
    one, when no rule of the store has ever been evaluated, as far back as what is still of
    use of its history reaches (crmd.engine.takeover)."""
    if not day_one or rule.backfill is not None:
        return start
    span = reach(rule)
    return EPOCH if span is None else max(EPOCH, now - span)


def resume_after_change(
    rule: Rule, watermark: datetime, since: datetime, tz: ZoneInfo
) -> datetime | None:
    """Where a once-a-day schedule whose time moved resumes; None for any other rule.

    It walks its watermark's day again (a reload, 10:00 -> 09:00 at 09:30), so the day's
    occurrence at the new time is not lost; the ledger's day key drops it if the day
    already fired.
    """
    trigger = rule.trigger
    if not isinstance(trigger, ScheduleTrigger) or not once_a_day(trigger.schedule):
        return None
    day_start = datetime.combine(watermark.astimezone(tz).date(), time(0), tz)
    return min(watermark, max(since, day_start.astimezone(UTC)))
