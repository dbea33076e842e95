"""When a trigger fires: pure functions of a time, the site zone and the working calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from crmd.calendar.offsets import align
from crmd.calendar.workcal import WorkCalendar
from crmd.rules.rule import AnnualTrigger, Due, EventTrigger

DAY = timedelta(days=1)
# Before any fire: where a rule that takes over all of history starts.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# The finest step between fire times: done up to just before a time `t` is `t - TICK`.
TICK = timedelta(microseconds=1)
# How far alignment to a time of day (`at: "09:00"`) can move a time: within its local day,
# up to a day either way, plus a DST change.
ALIGN_SLACK = DAY + timedelta(hours=2)


def event_fire_time(
    trigger: EventTrigger, event_at: datetime, tz: ZoneInfo, cal: WorkCalendar
) -> datetime:
    """The UTC instant an event trigger fires for an event at `event_at`.

    Monotone in event_at, which is what lets the engine find due fires by a range query.
    """
    t = event_at.astimezone(tz)
    if trigger.count is None and trigger.after is not None:
        t = trigger.after.apply(t, tz, cal)
    if trigger.count is None and trigger.at is not None:
        aligned = align(t, trigger.at, tz)
        # Compared in UTC: same-zone comparisons ignore `fold` around DST changes.
        if trigger.after is None and aligned.astimezone(UTC) < t.astimezone(UTC):
            # Without an offset, `at` means the first such time at or after the event.
            aligned = align(t + DAY, trigger.at, tz)
        t = aligned
    return t.astimezone(UTC)


def event_span(trigger: EventTrigger) -> tuple[timedelta, timedelta]:
    """The least and most real time between an event and its fire, for range queries."""
    low, high = (timedelta(0), timedelta(0))
    if trigger.count is not None:
        return low, high
    if trigger.after is not None:
        low, high = trigger.after.bounds()
    if trigger.at is not None:
        # Without an offset, alignment only ever moves the fire later.
        low = low - ALIGN_SLACK if trigger.after is not None else low
        high = high + ALIGN_SLACK
    return low, high


def anniversary(birthday: date, year: int, feb29: str) -> date:
    """The date a yearly occasion falls on in `year` (29 February in a common year moves)."""
    try:
        return birthday.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 2, 28) if feb29 == "feb28" else date(year, 3, 1)


def month_days_on(day: date, trigger: AnnualTrigger) -> list[int]:
    """The month*100+day birthday keys whose anniversary falls on `day`."""
    keys = [day.month * 100 + day.day]
    leap = day.year % 4 == 0 and (day.year % 100 != 0 or day.year % 400 == 0)
    if not leap:
        if trigger.feb29 == "feb28" and (day.month, day.day) == (2, 28):
            keys.append(229)
        if trigger.feb29 == "mar1" and (day.month, day.day) == (3, 1):
            keys.append(229)
    return keys


def _last_day(year: int, month: int) -> int:
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - DAY).day


def due_time(due: Due | None, fire_at: datetime, tz: ZoneInfo, cal: WorkCalendar) -> datetime:
    """When a task created by a fire at `fire_at` falls due (UTC)."""
    local = fire_at.astimezone(tz)
    if due is None:
        return (local + DAY).astimezone(UTC)
    if due.day is None:
        t = due.after.apply(local, tz, cal) if due.after is not None else local
        if due.at is not None:
            t = align(t, due.at, tz)
        return t.astimezone(UTC)
    at = due.at or time(23, 59)
    year, month = local.year, local.month
    for _ in range(3):  # this month, or the next one if the day has passed
        last = _last_day(year, month)
        day = date(year, month, last if due.day == "last" else min(due.day, last))
        if due.shift == "previous_working_day":
            day = cal.previous_working_day(day)
        elif due.shift == "next_working_day":
            day = cal.next_working_day(day)
        candidate = align(datetime.combine(day, time(12), tz), at, tz)
        if candidate.astimezone(UTC) >= fire_at.astimezone(UTC):
            return candidate.astimezone(UTC)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    raise AssertionError("a day of the month always recurs within three months")
