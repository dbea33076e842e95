"""Calendar schedules: each kind only answers "when is the next fire after t?" in local time.

How rule files write them: the words and cron text in `crmd.calendar.spec_words`, the `when`
forms in `crmd.calendar.schedule_spec`.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol, get_args
from zoneinfo import ZoneInfo

from croniter import croniter

from crmd.calendar.offsets import local_datetime, to_local
from crmd.calendar.spec_words import (
    ALL_MONTHS,
    WEEKDAYS,
    DaySpec,
    DayWord,
    Shift,
    parse_cron,
    parse_day_spec,
)
from crmd.calendar.workcal import FESTIVALS, WorkCalendar, festival_day

_ONE_DAY = timedelta(days=1)
_GAP_LOOKBACK = timedelta(hours=3)  # more than any DST gap (2 hours at most)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class Schedule(Protocol):
    """A calendar schedule in a site's zone.

    Implementations compare times in UTC: Python compares two datetimes of the same zone
    by wall-clock time, ignoring fold, which gets the repeated hour of autumn wrong.
    """

    def next_within(self, t: datetime, until: datetime | None) -> datetime | None:
        """The first fire strictly after `t` (aware, any zone), as an aware local datetime;
        None if it comes after `until`.

        With `until`, the working-day calendar is not asked about days whose fires would
        come after it, so a window ending in a published year never needs the next year's
        calendar. Without it, the answer is never None.
        """

    def next_after(self, t: datetime) -> datetime:
        """The first fire strictly after `t`, however far ahead."""

    def describe(self) -> str:
        """A short English description, e.g. "monthly on day 10 at 09:00"."""


class _Unbounded:
    """next_after for schedules that implement next_within."""

    def next_within(self, t: datetime, until: datetime | None) -> datetime | None:
        raise NotImplementedError

    def next_after(self, t: datetime) -> datetime:
        fire = self.next_within(t, None)
        assert fire is not None, "a schedule without a horizon always has a next fire"
        return fire


def occurrences(schedule: Schedule, start: datetime, end: datetime) -> Iterator[datetime]:
    """Every fire of `schedule` in (start, end]."""
    t, last = start, to_local(end, UTC)  # to_local refuses a naive end
    while (fire := schedule.next_within(t, last)) is not None:
        yield fire
        t = fire


def occurrence_key(schedule: Schedule, fire: datetime) -> str:
    """What makes a fire of `schedule` the same occurrence, for the fires ledger.

    A schedule that fires at most once a local day (every form but a cron expression with
    several times a day) is keyed by its local day: moving a rule from 09:00 to 10:00 on a
    day it already fired does not fire it again. Otherwise, the exact local time.
    """
    if once_a_day(schedule):
        return f"day:{fire.date().isoformat()}"
    return f"at:{fire.isoformat()}"


def once_a_day(schedule: Schedule) -> bool:
    """Whether the schedule fires at most once a local day."""
    if isinstance(schedule, CronSchedule):
        fields = schedule.expr.split()
        if len(fields) == 1:  # @yearly ... @midnight fire once a day at most; @hourly not
            return fields[0] != "@hourly"
        return fields[0].isdigit() and fields[1].isdigit()
    return True


def _beyond(until: datetime | None, fire: datetime) -> bool:
    """Whether `fire` comes after the horizon `until` (None: no horizon)."""
    return until is not None and fire.astimezone(UTC) > until.astimezone(UTC)


def _check_at(at: time) -> None:
    if at.tzinfo is not None:
        raise ValueError(f"{at!r}: a schedule's time of day is local, without a zone")


# -- cron ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CronSchedule(_Unbounded):
    """A cron expression evaluated on the local wall clock.

    Each local wall-clock time fires once: a time skipped when clocks go forward fires
    later by the length of the gap (02:30 -> 03:30), and a time shown twice when clocks go
    back fires the first time only. croniter is fed naive local times for this; given aware
    ones it fires a skipped time at the end of the gap and a repeated time twice.
    """

    expr: str
    tz: ZoneInfo

    def __post_init__(self) -> None:
        object.__setattr__(self, "expr", parse_cron(self.expr))

    def next_within(self, t: datetime, until: datetime | None) -> datetime | None:
        fire = self._next(t)
        return None if _beyond(until, fire) else fire

    def _next(self, t: datetime) -> datetime:
        local = to_local(t, self.tz)
        after = local.astimezone(UTC)
        wall = local.replace(tzinfo=None, fold=0)
        if (after - _GAP_LOOKBACK).astimezone(self.tz).utcoffset() != local.utcoffset():
            wall -= _GAP_LOOKBACK  # a time skipped just before t fires later, maybe after t
        candidates = croniter(self.expr, wall)
        best: datetime | None = None
        while True:
            wall = candidates.get_next(datetime)
            # Fires keep the order of their wall times, except that a skipped time moves
            # on by the gap: once past the best fire's wall time, nothing can beat it.
            if best is not None and wall > best.replace(tzinfo=None):
                return best
            fire = local_datetime(wall.date(), wall.time(), self.tz)
            if fire.astimezone(UTC) > after and (
                best is None or fire.astimezone(UTC) < best.astimezone(UTC)
            ):
                best = fire

    def describe(self) -> str:
        return f"cron '{self.expr}'"


# -- daily and weekly ---------------------------------------------------------------------


@dataclass(frozen=True)
class DailySchedule(_Unbounded):
    """Every day (or every working day) at a local time."""

    at: time
    tz: ZoneInfo
    cal: WorkCalendar
    working_days_only: bool = False

    def __post_init__(self) -> None:
        _check_at(self.at)

    def next_within(self, t: datetime, until: datetime | None) -> datetime | None:
        local = to_local(t, self.tz)
        after, day = local.astimezone(UTC), local.date() - _ONE_DAY
        while True:
            fire = local_datetime(day, self.at, self.tz)
            if _beyond(until, fire):
                return None
            # Ask the calendar only about days that could fire: it refuses unpublished years.
            if fire.astimezone(UTC) > after and (
                not self.working_days_only or self.cal.is_working_day(day)
            ):
                return fire
            day += _ONE_DAY

    def describe(self) -> str:
        every = "every working day" if self.working_days_only else "daily"
        return f"{every} at {self.at:%H:%M}"


@dataclass(frozen=True)
class WeeklySchedule(_Unbounded):
    """On some days of the week (0 = Monday) at a local time."""

    weekdays: tuple[int, ...]
    at: time
    tz: ZoneInfo

    def __post_init__(self) -> None:
        _check_at(self.at)
        if not self.weekdays or any(type(w) is not int or not 0 <= w <= 6 for w in self.weekdays):
            raise ValueError(f"weekdays must be 0 (Monday) to 6 (Sunday), not {self.weekdays!r}")
        object.__setattr__(self, "weekdays", tuple(sorted(set(self.weekdays))))

    def next_within(self, t: datetime, until: datetime | None) -> datetime | None:
        local = to_local(t, self.tz)
        after, day = local.astimezone(UTC), local.date() - _ONE_DAY
        while True:
            if day.weekday() in self.weekdays:
                fire = local_datetime(day, self.at, self.tz)
                if fire.astimezone(UTC) > after:
                    return None if _beyond(until, fire) else fire
            day += _ONE_DAY

    def describe(self) -> str:
        days = ", ".join(WEEKDAYS[w] for w in self.weekdays)
        return f"weekly on {days} at {self.at:%H:%M}"


# -- statutory holidays -------------------------------------------------------------------


@dataclass(frozen=True)
class HolidaySchedule(_Unbounded):
    """On the first day of one of China's statutory holidays each year, at a local time.

    The lunar festivals (春节, 端午, 中秋) move from year to year; their dates are known
    for any year, so this schedule never needs the official calendar.
    """

    festival: str  # a key of crmd.calendar.workcal.FESTIVALS
    at: time
    tz: ZoneInfo

    def __post_init__(self) -> None:
        _check_at(self.at)
        if self.festival not in FESTIVALS:
            raise ValueError(f"festival must be one of {sorted(FESTIVALS)}, not {self.festival!r}")

    def next_within(self, t: datetime, until: datetime | None) -> datetime | None:
        local = to_local(t, self.tz)
        after = local.astimezone(UTC)
        year = local.year
        while True:
            day = festival_day(self.festival, year)
            if day is not None:
                fire = local_datetime(day, self.at, self.tz)
                if _beyond(until, fire):
                    return None
                if fire.astimezone(UTC) > after:
                    return fire
            year += 1

    def describe(self) -> str:
        return f"yearly on the first day of {FESTIVALS[self.festival]} at {self.at:%H:%M}"


# -- monthly and quarterly ----------------------------------------------------------------


@dataclass(frozen=True)
class MonthlySchedule(_Unbounded):
    """On some days of some months at a local time, optionally moved off days off.

    A day number past the month's end means its last day (30 in February is the 28th or
    29th); specs landing on the same date fire once. `shift` moves a day that is not a
    working day to the previous or next working day; fires stay strictly increasing.
    """

    days: tuple[DaySpec, ...]
    at: time
    tz: ZoneInfo
    cal: WorkCalendar
    months: tuple[int, ...] = ALL_MONTHS
    shift: Shift = "none"

    def __post_init__(self) -> None:
        _check_at(self.at)
        days = parse_day_spec(list(self.days))  # also accepts "last day", "10", ...
        if not self.months or any(type(m) is not int or not 1 <= m <= 12 for m in self.months):
            raise ValueError(f"months must be 1 to 12, not {self.months!r}")
        if self.shift not in get_args(Shift):
            raise ValueError(f"shift must be one of {get_args(Shift)}, not {self.shift!r}")
        numbers = sorted({s for s in days if isinstance(s, int)})
        words = [w for w in get_args(DayWord) if w in days]
        object.__setattr__(self, "days", (*numbers, *words))
        object.__setattr__(self, "months", tuple(sorted(set(self.months))))

    def next_within(self, t: datetime, until: datetime | None) -> datetime | None:
        local = to_local(t, self.tz)
        # Start a month early: "next working day" can carry the 31st into the next month.
        year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
        lookback = True
        while True:
            if month in self.months:
                has_fire, fire = self._first_fire_in(
                    year, month, local.astimezone(UTC), until, lookback
                )
                if has_fire:
                    return fire
            lookback = False
            year, month = (year, month + 1) if month < 12 else (year + 1, 1)

    def _first_fire_in(
        self, year: int, month: int, after: datetime, until: datetime | None, lookback: bool
    ) -> tuple[bool, datetime | None]:
        """Whether the month has a fire after `after` (UTC), and the earliest one, or None
        if it comes after `until`.

        Shifting is monotonic, so the month's fires all come after the previous month's
        and before the next month's (or coincide, and coinciding fires fire once).
        """
        if lookback and self.shift != "next_working_day":
            return False, None  # nothing from before t's month can land after t

        def beyond(day: date) -> bool:
            return _beyond(until, local_datetime(day, self.at, self.tz))

        fires: list[datetime] = []
        unknown_outside = False  # a fire known only to fall outside (after, until]
        for spec in self.days:
            if lookback and spec in ("first_working_day", "last_working_day"):
                continue  # a working day of an earlier month is before t
            day = self._day_of(spec, year, month, after, beyond)
            if day is None:
                unknown_outside = True
                continue
            fire = local_datetime(day, self.at, self.tz).astimezone(UTC)
            if fire > after:
                fires.append(fire)
        if not fires:
            return unknown_outside, None
        first = min(fires)
        return True, None if _beyond(until, first) else first.astimezone(self.tz)

    def _day_of(
        self, spec: DaySpec, year: int, month: int, after: datetime, beyond: Callable[[date], bool]
    ) -> date | None:
        """The day `spec` fires in the month, or None if that day's fire is certainly not
        in (after, until], though which day it is may be unknowable.

        A day whose fire could not come after `after` may be returned unshifted.
        """
        if spec in ("first_working_day", "last_working_day"):
            if beyond(date(year, month, 1)):
                return None  # both are on or after the 1st
            if spec == "first_working_day":
                return self.cal.first_working_day(year, month)
            return self.cal.last_working_day(year, month)
        last = calendar.monthrange(year, month)[1]
        raw = date(year, month, min(spec, last) if isinstance(spec, int) else last)
        if self.shift == "previous_working_day":
            if local_datetime(raw, self.at, self.tz).astimezone(UTC) <= after:
                return raw  # moving earlier keeps it <= after; no need to ask the calendar

            def outside(day: date) -> bool:
                return beyond(day) or local_datetime(day, self.at, self.tz).astimezone(UTC) <= after

            return self.cal.previous_working_day_unless(raw, outside)
        if self.shift == "next_working_day":
            return None if beyond(raw) else self.cal.next_working_day(raw)  # later stays beyond
        return raw

    def describe(self) -> str:
        words = {w: "the " + w.replace("_", " ") for w in get_args(DayWord)}
        words["last"] = "the last day"
        numbers = [str(s) for s in self.days if isinstance(s, int)]
        parts = [f"day{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"] if numbers else []
        parts += [words[s] for s in self.days if isinstance(s, str)]
        on = " and ".join(parts)
        first = self.months[0]
        if self.months == ALL_MONTHS:
            text = f"monthly on {on}"
        elif first <= 3 and self.months == (first, first + 3, first + 6, first + 9):
            text = f"quarterly on {on}" + (f" of month {first} of the quarter" if first > 1 else "")
        else:
            text = f"on {on} of {', '.join(_MONTHS[m - 1] for m in self.months)}"
        text += f" at {self.at:%H:%M}"
        if self.shift != "none":
            text += f", moved to the {self.shift.replace('_', ' ')} if a day off"
        return text


def quarterly(
    days: tuple[DaySpec, ...],
    at: time,
    tz: ZoneInfo,
    cal: WorkCalendar,
    *,
    month_of_quarter: int = 1,
    shift: Shift = "none",
) -> MonthlySchedule:
    """A MonthlySchedule in one month of each quarter (the first: Jan, Apr, Jul, Oct)."""
    if month_of_quarter not in (1, 2, 3):
        raise ValueError(f"month_of_quarter must be 1, 2 or 3, not {month_of_quarter!r}")
    months = tuple(month_of_quarter + 3 * q for q in range(4))
    return MonthlySchedule(days, at, tz, cal, months=months, shift=shift)
