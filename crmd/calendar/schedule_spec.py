"""Schedules as rule files write them: `when` mappings such as {monthly: 10, at: "09:00"}.

Reads each form's words (crmd.calendar.spec_words) into the schedule classes of
`crmd.calendar.schedules`, and names the offending key when a value is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from crmd.calendar.offsets import parse_time_of_day
from crmd.calendar.schedules import (
    CronSchedule,
    DailySchedule,
    HolidaySchedule,
    MonthlySchedule,
    Schedule,
    WeeklySchedule,
    quarterly,
)
from crmd.calendar.spec_words import (
    parse_day_spec,
    parse_days,
    parse_festival,
    parse_shift,
    parse_weekdays,
)
from crmd.calendar.workcal import WorkCalendar

_T = TypeVar("_T")


class ScheduleSpecError(ValueError):
    """A schedule written wrongly in a rule file; `key` names the offending key, if one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# Each schedule form, with the keys that may go with it (the form itself first).
SCHEDULE_KEYS: dict[str, tuple[str, ...]] = {
    "cron": ("cron",),
    "daily": ("daily", "days"),
    "weekly": ("weekly", "at"),
    "monthly": ("monthly", "at", "shift"),
    "quarterly": ("quarterly", "at", "shift"),
    "holiday": ("holiday", "at"),
}
_SCHEDULE_HELP = (
    "write one of {cron: '30 9 * * 1-5'}, {daily: '09:30'} (with days: working for working "
    "days only), {weekly: monday, at: '12:00'}, {monthly: 10, at: '09:00'} or "
    "{quarterly: 1, at: '09:00'} or {holiday: spring festival, at: '09:00'}; monthly and "
    "quarterly take shift: previous working day"
)


def schedule_from_spec(spec: Mapping[str, Any], tz: ZoneInfo, cal: WorkCalendar) -> Schedule:
    """Build a schedule from a rule's `when` mapping, such as {monthly: 10, at: "09:00"}.

    Raises ScheduleSpecError (a ValueError) naming the bad value, with its key in `key`.
    """
    kinds = [k for k in SCHEDULE_KEYS if k in spec]
    if len(kinds) != 1:
        found = f"found {' and '.join(kinds)}" if kinds else "found none"
        raise ScheduleSpecError(f"a schedule takes exactly one kind ({found}): {_SCHEDULE_HELP}")
    kind = kinds[0]
    for key in spec:
        if key not in SCHEDULE_KEYS[kind]:
            allowed = ", ".join(SCHEDULE_KEYS[kind][1:]) or "no other keys"
            raise ScheduleSpecError(
                f"{key!r} does not go with {kind} (it takes {allowed}): {_SCHEDULE_HELP}", key
            )
    value = spec[kind]
    if kind == "cron":
        return _read(kind, lambda v: CronSchedule(v, tz), value)
    if kind == "daily":
        at = _read(kind, parse_time_of_day, value)
        return DailySchedule(at, tz, cal, _read("days", parse_days, spec.get("days", "all")))
    at = _read("at", parse_time_of_day, spec.get("at", "00:00"))
    if kind == "weekly":
        return WeeklySchedule(_read(kind, parse_weekdays, value), at, tz)
    if kind == "holiday":
        return HolidaySchedule(_read(kind, parse_festival, value), at, tz)
    days = _read(kind, parse_day_spec, value)
    shift = _read("shift", parse_shift, spec.get("shift", "none"))
    if kind == "monthly":
        return MonthlySchedule(days, at, tz, cal, shift=shift)
    return quarterly(days, at, tz, cal, shift=shift)


def _read(key: str, parse: Callable[[Any], _T], value: object) -> _T:
    try:
        return parse(value)
    except ValueError as error:
        raise ScheduleSpecError(str(error), key) from None
