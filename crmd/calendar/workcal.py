"""China's official working-day calendar: public holidays, and 调休 make-up working days."""

from __future__ import annotations

import calendar
import functools
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta

from holidays import country_holidays
from holidays.countries.china import ChinaStaticHolidays

from crmd.errors import CalendarNotPublished

FIRST_PUBLISHED = 2001
"""The first year of the State Council's holiday notices that the holidays package models."""

SITE_DAY_OFF = "Day off (site calendar)"
_ONE_DAY = timedelta(days=1)


@functools.cache
def _library_make_up_days() -> dict[int, frozenset[date]]:
    """Make-up working days known to the holidays package, keyed by their own year.

    `special_public_holidays` maps a year to entries (month_off, day_off, month_from,
    day_from[, year_from]): day_off is a day off given in exchange for working on day_from.
    Three-item entries (month, day, name) are one-off extra holidays, not exchanges.
    A make-up day can fall in the previous year (2001-12-29 pays for 2002-01-02), hence
    the re-keying by the make-up day's own year.
    """
    by_year: dict[int, set[date]] = {}
    for year, entries in ChinaStaticHolidays.special_public_holidays.items():
        if entries and isinstance(entries[0], int):  # a single entry, not a tuple of them
            entries = (entries,)
        for entry in entries:
            if len(entry) in (4, 5) and isinstance(entry[2], int) and isinstance(entry[3], int):
                year_from = entry[4] if len(entry) == 5 else year
                made_up = date(year_from, entry[2], entry[3])
                by_year.setdefault(made_up.year, set()).add(made_up)
    return {year: frozenset(days) for year, days in by_year.items()}


FESTIVALS: dict[str, str] = {
    "new_year": "New Year's Day",
    "spring_festival": "Chinese New Year (Spring Festival)",
    "qingming": "Tomb-Sweeping Day",
    "labour_day": "Labor Day",
    "dragon_boat": "Dragon Boat Festival",
    "mid_autumn": "Mid-Autumn Festival",
    "national_day": "National Day",
}
"""China's statutory holidays by our name, with the holidays package's name for them."""


@functools.lru_cache(maxsize=1024)
def festival_day(festival: str, year: int) -> date | None:
    """The first day of a statutory holiday (a FESTIVALS key) in `year`: 春节 is the first
    day of the lunar year, 中秋 the 15th of the eighth lunar month. The package computes
    the festivals for any year; only the days off around them need the year's notice.
    None for a year the holiday did not exist in (清明 became one in 2008)."""
    name = FESTIVALS[festival]
    listed = country_holidays("CN", years=year, observed=False).items()
    # Two holidays on one day share an entry: "Mid-Autumn Festival; National Day" (2028).
    days = [d for d, names in listed if name in names.split("; ")]
    return min((d for d in days if d.year == year), default=None)


def _library_last_year() -> int:
    """The last year whose official notice the installed holidays package knows."""
    return max(ChinaStaticHolidays.special_public_holidays)


class _Year:
    """One year of the calendar: its working days and the names of its holidays."""

    __slots__ = ("days_off", "working")

    def __init__(self, working: frozenset[date], days_off: dict[date, str]) -> None:
        self.working = working
        self.days_off = days_off


class WorkCalendar:
    """Which days are working days in China, refusing years not officially published."""

    first_published: int = FIRST_PUBLISHED

    def __init__(
        self,
        *,
        extra_days_off: Iterable[date] = (),
        extra_working_days: Iterable[date] = (),
        published_through: int | None = None,
    ) -> None:
        self.last_published: int = (
            _library_last_year() if published_through is None else published_through
        )
        if self.last_published < FIRST_PUBLISHED:
            raise ValueError(
                f"published_through {self.last_published} is before {FIRST_PUBLISHED}, "
                f"the first year of the official calendar"
            )
        self._extra_off = frozenset(_plain_date(d) for d in extra_days_off)
        self._extra_working = frozenset(_plain_date(d) for d in extra_working_days)
        both = sorted(self._extra_off & self._extra_working)
        if both:
            listed = ", ".join(d.isoformat() for d in both)
            raise ValueError(f"{listed}: listed both as a day off and as a working day")
        self._years: dict[int, _Year] = {}

    def __repr__(self) -> str:
        return (
            f"WorkCalendar(published {self.first_published}..{self.last_published}, "
            f"{len(self._extra_off)} extra days off, "
            f"{len(self._extra_working)} extra working days)"
        )

    @property
    def site_years(self) -> frozenset[int]:
        """The years the site lists days off or working days of (site.yaml's calendar)."""
        return frozenset(d.year for d in self._extra_off | self._extra_working)

    @property
    def library_last(self) -> int:
        """The last year whose official notice the installed holidays package knows."""
        return _library_last_year()

    def is_working_day(self, d: date) -> bool:
        """Whether `d` is a working day; CalendarNotPublished for an unpublished year."""
        if isinstance(d, datetime):
            raise TypeError(f"is_working_day takes a date, not the datetime {d!r}")
        year = self._years.get(d.year)
        if year is None:
            year = self._load(d.year)
        return d in year.working

    def day_off_name(self, d: date) -> str | None:
        """The holiday's name, "weekend", or None for a working day."""
        if self.is_working_day(d):
            return None
        return self._years[d.year].days_off.get(d, "weekend")

    def add_working_days(self, d: date, n: int) -> date:
        """The n-th working day after `d` (before it if n < 0); n == 0 is `d` or the next one."""
        if n == 0:
            return self.next_working_day(d)
        step = _ONE_DAY if n > 0 else -_ONE_DAY
        remaining = abs(n)
        while remaining:
            d += step
            if self.is_working_day(d):
                remaining -= 1
        return d

    def next_working_day(self, d: date, *, include: bool = True) -> date:
        """The first working day on or after `d` (strictly after it if include=False)."""
        if not include:
            d += _ONE_DAY
        while not self.is_working_day(d):
            d += _ONE_DAY
        return d

    def previous_working_day(self, d: date, *, include: bool = True) -> date:
        """The last working day on or before `d` (strictly before it if include=False)."""
        if not include:
            d -= _ONE_DAY
        while not self.is_working_day(d):
            d -= _ONE_DAY
        return d

    def previous_working_day_unless(self, d: date, ignore: Callable[[date], bool]) -> date | None:
        """previous_working_day(d), or None when it is certainly a day that `ignore` holds for.

        `ignore` holds outside some interval of days a caller cares about, e.g. the days whose
        fires fall in a window. This answers without the calendar of an unpublished year
        when the answer cannot matter: walking back from a day of that year, the walk could
        stop on any of its days, all ignored; if it then reaches a known working day that is
        ignored too, every day it could stop on is. CalendarNotPublished otherwise.
        """
        unknown: int | None = None
        while True:
            if not self.first_published <= d.year <= self.last_published:
                if not ignore(d):
                    raise CalendarNotPublished(unknown or d.year, self.last_published)
                unknown = unknown or d.year
            elif self.is_working_day(d):
                if unknown is None:
                    return d
                if ignore(d):
                    return None
                raise CalendarNotPublished(unknown, self.last_published)
            d -= _ONE_DAY

    def first_working_day(self, year: int, month: int) -> date:
        """The month's first working day."""
        return self.next_working_day(date(year, month, 1))

    def last_working_day(self, year: int, month: int) -> date:
        """The month's last working day."""
        return self.previous_working_day(date(year, month, calendar.monthrange(year, month)[1]))

    def _load(self, year: int) -> _Year:
        if not self.first_published <= year <= self.last_published:
            raise CalendarNotPublished(year, self.last_published)
        # For a year the library has no official notice for (a site raised published_through),
        # take only the statutory days: the library's "observed" days are its guesses at the
        # exchanges, and the site lists the real ones from the State Council's notice.
        library_knows = year <= _library_last_year()
        days_off = {
            d: name
            for d, name in country_holidays("CN", years=year, observed=library_knows).items()
            if d.year == year
        }
        days_off.update((d, SITE_DAY_OFF) for d in self._extra_off if d.year == year)
        make_up = _library_make_up_days().get(year, frozenset()) - self._extra_off
        for d in self._extra_working:
            days_off.pop(d, None)
        make_up |= {d for d in self._extra_working if d.year == year}
        working: set[date] = set(make_up)
        d = date(year, 1, 1)
        while d.year == year:
            if d.weekday() < 5 and d not in days_off:
                working.add(d)
            d += _ONE_DAY
        loaded = _Year(frozenset(working), days_off)
        self._years[year] = loaded
        return loaded


def _plain_date(d: date) -> date:
    if isinstance(d, datetime):
        raise TypeError(f"calendar days must be dates, not the datetime {d!r}")
    return d


@functools.cache
def default_calendar() -> WorkCalendar:
    """The calendar as the installed holidays package knows it, built once per process."""
    return WorkCalendar()
