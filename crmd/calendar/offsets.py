"""Durations and times of day as managers write them in rule files ("3 working days", "09:30")."""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo

from crmd.calendar.workcal import WorkCalendar

Unit = Literal["minutes", "hours", "days", "weeks", "months", "working_days"]
UNITS: tuple[Unit, ...] = get_args(Unit)

# The largest daylight-saving shift in the tz database is 2 hours (Antarctica/Troll); most
# zones shift by 1 hour and Asia/Shanghai not at all. A day-based offset keeps the wall-clock
# time, so its real length differs from whole days by at most one such shift.
WALL_CLOCK_SLACK = timedelta(hours=2)

_SINGULAR: dict[Unit, str] = {
    "minutes": "minute",
    "hours": "hour",
    "days": "day",
    "weeks": "week",
    "months": "month",
    "working_days": "working day",
}

_UNIT_WORDS: dict[str, Unit] = {
    **dict.fromkeys(("minute", "minutes", "min", "mins", "分钟", "分"), "minutes"),
    **dict.fromkeys(("hour", "hours", "hr", "hrs", "小时", "个小时", "钟头"), "hours"),
    **dict.fromkeys(("day", "days", "天", "日"), "days"),
    **dict.fromkeys(("week", "weeks", "周", "星期", "个星期"), "weeks"),
    **dict.fromkeys(("month", "months", "月", "个月"), "months"),
    **dict.fromkeys(
        (
            "working day", "working days", "working_day", "working_days",
            "workday", "workdays", "business day", "business days",
            "工作日", "个工作日",
        ),
        "working_days",
    ),
}  # fmt: skip

_OFFSET_RE = re.compile(r"^\s*([+-]?\d+)\s*(.*?)\s*$")
_TIME_RE = re.compile(r"^\s*(\d{1,2})\s*[:：]\s*(\d{2})\s*$")
_OFFSET_HELP = (
    "write a whole number and a unit, like '3 days', '2 working days', '4 hours', "
    "'90 minutes', '2 weeks', '6 months' (or '3天', '3个工作日', '2小时', '30分钟', '2周', "
    "'6个月')"
)


@dataclass(frozen=True)
class Offset:
    """A duration: elapsed minutes or hours, or calendar or working days in local time."""

    amount: int
    unit: Unit

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError(f"Offset amount must be an int, not {self.amount!r}")
        if self.amount < 0:
            raise ValueError(f"Offset amount must not be negative: {self.amount}")
        if self.unit not in UNITS:
            raise ValueError(f"{self.unit!r} is not a unit: use one of {', '.join(UNITS)}")

    def __str__(self) -> str:
        word = _SINGULAR[self.unit] if self.amount == 1 else self.unit.replace("_", " ")
        return f"{self.amount} {word}"

    @property
    def day_based(self) -> bool:
        """Whether the offset counts days in local time (and so keeps the wall-clock time)."""
        return self.unit not in ("minutes", "hours")

    def apply(self, t: datetime, tz: ZoneInfo, cal: WorkCalendar) -> datetime:
        """The moment this offset after `t`, as an aware datetime in `tz`.

        `cal` is consulted only by working-day offsets (and may raise CalendarNotPublished).
        """
        local = to_local(t, tz)
        if self.unit == "minutes":
            return (t.astimezone(UTC) + timedelta(minutes=self.amount)).astimezone(tz)
        if self.unit == "hours":
            return (t.astimezone(UTC) + timedelta(hours=self.amount)).astimezone(tz)
        day = local.date()
        if self.unit == "days":
            landed = day + timedelta(days=self.amount)
        elif self.unit == "weeks":
            landed = day + timedelta(weeks=self.amount)
        elif self.unit == "months":
            landed = add_months(day, self.amount)
        else:
            landed = cal.add_working_days(day, self.amount)
        if landed == day:
            return local  # keeps the fold of a repeated hour: "0 days" is no time at all
        return local_datetime(landed, local.time(), tz)

    def move_date(self, d: date, cal: WorkCalendar, *, backwards: bool = False) -> date:
        """A calendar date moved by this day-based offset, forwards or backwards."""
        n = -self.amount if backwards else self.amount
        if self.unit == "days":
            return d + timedelta(days=n)
        if self.unit == "weeks":
            return d + timedelta(weeks=n)
        if self.unit == "months":
            return add_months(d, n)
        if self.unit == "working_days":
            return cal.add_working_days(d, n)
        raise ValueError(f"{self} is not a whole number of days")

    def bounds(self) -> tuple[timedelta, timedelta]:
        """The least and the most real time this offset can span, for range queries.

        Minutes and hours are exact. Day-based offsets keep the wall-clock time, so a DST
        change in between shortens or lengthens them by up to WALL_CLOCK_SLACK. Months are
        28 to 31 days each. N working days are at least N calendar days; at most N * 8/5 + 12:
        China has had 248 to 253 working days a year (7.2 to 7.4 calendar days per 5 working
        days) and at most 10 days off in a row (Spring Festival 2020), so 8 per 5 plus 12
        leaves room for such a run with a weekend beside it, and for future years with more
        holidays. (The 7/5 + 12 rule of thumb fails from about 100 working days on.)
        tests/test_offsets.py checks the bound against every published year.
        """
        n = self.amount
        if self.unit == "minutes":
            return timedelta(minutes=n), timedelta(minutes=n)
        if self.unit == "hours":
            return timedelta(hours=n), timedelta(hours=n)
        if n == 0 and self.unit != "working_days":
            return timedelta(0), timedelta(0)
        if self.unit in ("days", "weeks"):
            days = n * 7 if self.unit == "weeks" else n
            low, high = timedelta(days=days), timedelta(days=days)
        elif self.unit == "months":
            low, high = timedelta(days=28 * n), timedelta(days=31 * n)
        else:
            low, high = timedelta(days=n), timedelta(days=math.ceil(n * 8 / 5) + 12)
        return max(low - WALL_CLOCK_SLACK, timedelta(0)), high + WALL_CLOCK_SLACK


def parse_offset(text: str | int) -> Offset:
    """Read a duration such as "3 days", "2 working days", "90 min", "3天" or "3个工作日"."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration: a number needs a unit; {_OFFSET_HELP}")
    match = _OFFSET_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration: {_OFFSET_HELP}")
    number, word = match.groups()
    unit = _UNIT_WORDS.get(re.sub(r"\s+", " ", word.casefold()))
    if unit is None:
        raise ValueError(f"{text!r} is not a duration: {_OFFSET_HELP}")
    amount = int(number)
    if amount < 0 or number.startswith("-"):
        raise ValueError(
            f"{text!r} is not a duration: durations count forward, so the number must not "
            f"be negative; {_OFFSET_HELP}"
        )
    return Offset(amount, unit)


def parse_time_of_day(text: str | int) -> time:
    """Read a local time of day "HH:MM" (or "H:MM"); also the int YAML makes of unquoted 9:30.

    PyYAML's safe loader follows YAML 1.1, where an unquoted 9:30 or 17:00 is a base-60
    integer (9 * 60 + 30 = 570), while 09:30 (leading zero) stays a string. So an int is
    taken as minutes past midnight when 0 <= n < 1440; 9:30:00 (34200) is refused.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"{text!r} is not a time of day: write HH:MM, like '09:30'")
    if isinstance(text, int):
        if 0 <= text < 24 * 60:
            return time(text // 60, text % 60)
        raise ValueError(f"{text!r} is not a time of day: write HH:MM in quotes, like '09:30'")
    match = _TIME_RE.match(text)
    if match is not None:
        hour, minute = int(match[1]), int(match[2])
        if hour < 24 and minute < 60:
            return time(hour, minute)
    raise ValueError(f"{text!r} is not a time of day: write HH:MM, like '09:30'")


def to_local(t: datetime, tz: tzinfo) -> datetime:
    """`t` in the zone `tz`, normalised; a naive datetime is refused, never guessed."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t!r} is a naive datetime: crmd needs aware datetimes")
    # Through UTC: astimezone into t's own zone would keep a wall time that does not exist.
    return t.astimezone(UTC).astimezone(tz)


@lru_cache(maxsize=4096)
def local_datetime(d: date, at: time, tz: ZoneInfo) -> datetime:
    """The moment the clocks in `tz` show `at` on `d`.

    A time shown twice (clocks go back) is the first of the two (fold=0). A time skipped
    (clocks go forward) is moved on by the length of the gap, as PEP 495 and dateutil do:
    02:30 on a night that jumps from 02:00 to 03:00 is 03:30.

    Cached: a page of fires asks for the same few days at the same few times again and again.
    """
    wall = datetime.combine(d, at.replace(tzinfo=None, fold=0), tzinfo=tz)
    return wall.astimezone(UTC).astimezone(tz)


def align(t: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The moment `at` on the local date of `t` (which may be before `t`)."""
    return local_datetime(to_local(t, tz).date(), at, tz)


def add_months(d: date, n: int) -> date:
    """The same day of the month n months on, or that month's last day if it is shorter."""
    year, month0 = divmod(d.month - 1 + n, 12)
    year += d.year
    last = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(d.day, last))
