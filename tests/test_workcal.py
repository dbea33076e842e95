"""China's working-day calendar: holidays, 调休 make-up days, and unpublished years."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from holidays import HolidayBase, country_holidays
from holidays.countries.china import ChinaStaticHolidays

from crmd.calendar.workcal import SITE_DAY_OFF, WorkCalendar, default_calendar
from crmd.errors import CalendarNotPublished

CAL = WorkCalendar()
D = date.fromisoformat


@pytest.mark.parametrize(
    "day", ["2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"]
)
def test_2026_make_up_days_are_weekend_working_days(day: str) -> None:
    assert D(day).weekday() >= 5
    assert CAL.is_working_day(D(day))
    assert CAL.day_off_name(D(day)) is None


@pytest.mark.parametrize(
    ("day", "name"),
    [
        ("2026-01-01", "New Year's Day"),
        ("2026-01-02", "Day off (substituted from 01/04/2026)"),
        ("2026-02-16", "Chinese New Year's Eve"),
        ("2026-02-17", "Chinese New Year (Spring Festival)"),
        ("2026-02-20", "Day off (substituted from 02/14/2026)"),
        ("2026-02-21", "weekend"),
        ("2026-02-23", "Day off (substituted from 02/28/2026)"),
        ("2026-05-05", "Day off (substituted from 05/09/2026)"),
        ("2026-10-01", "National Day"),
        ("2026-10-03", "National Day"),  # a Saturday holiday is named, not "weekend"
        ("2026-10-04", "weekend"),
        ("2026-10-07", "Day off (substituted from 10/10/2026)"),
        ("2026-03-07", "weekend"),
    ],
)
def test_2026_days_off_are_named(day: str, name: str) -> None:
    assert not CAL.is_working_day(D(day))
    assert CAL.day_off_name(D(day)) == name


def test_2026_spring_festival_and_national_day_runs() -> None:
    off = [D("2026-02-15") + timedelta(days=i) for i in range(9)]  # Sun 15 .. Mon 23
    assert [CAL.is_working_day(d) for d in off] == [False] * 9
    assert CAL.is_working_day(D("2026-02-13"))
    assert CAL.is_working_day(D("2026-02-24"))
    national = [D("2026-10-01") + timedelta(days=i) for i in range(7)]
    assert not any(CAL.is_working_day(d) for d in national)
    assert CAL.is_working_day(D("2026-10-08"))


def test_ordinary_days() -> None:
    assert CAL.is_working_day(D("2026-03-02"))  # Monday
    assert CAL.is_working_day(D("2026-03-06"))  # Friday
    assert not CAL.is_working_day(D("2026-03-07"))  # Saturday
    assert not CAL.is_working_day(D("2026-03-08"))  # Sunday


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        ("2026-02-13", 1, "2026-02-14"),  # Friday -> the make-up Saturday
        ("2026-02-13", 2, "2026-02-24"),  # then over the whole Spring Festival
        ("2026-02-13", 3, "2026-02-25"),
        ("2026-02-14", 1, "2026-02-24"),
        ("2026-02-16", 1, "2026-02-24"),  # from a day off
        ("2026-09-30", 1, "2026-10-08"),
        ("2026-09-30", 2, "2026-10-09"),
        ("2026-09-30", 3, "2026-10-10"),  # make-up Saturday
        ("2026-09-30", 4, "2026-10-12"),
        ("2025-12-31", 1, "2026-01-04"),  # over New Year to the make-up Sunday
        ("2026-01-02", 1, "2026-01-04"),
        ("2026-01-04", 1, "2026-01-05"),
        ("2026-03-06", 1, "2026-03-09"),  # Friday -> Monday
        ("2026-03-06", 5, "2026-03-13"),
        ("2026-03-06", 0, "2026-03-06"),  # 0: itself when working
        ("2026-03-07", 0, "2026-03-09"),  # 0: else the next working day
        ("2026-10-01", 0, "2026-10-08"),
        ("2026-02-24", -1, "2026-02-14"),
        ("2026-02-24", -2, "2026-02-13"),
        ("2026-10-08", -1, "2026-09-30"),
        ("2026-10-12", -1, "2026-10-10"),
        ("2026-01-05", -1, "2026-01-04"),
        ("2026-01-04", -1, "2025-12-31"),
        ("2026-03-09", -1, "2026-03-06"),
    ],
)
def test_add_working_days(start: str, n: int, expected: str) -> None:
    assert CAL.add_working_days(D(start), n) == D(expected)


def test_add_working_days_forward_and_back_meet() -> None:
    day = D("2026-01-05")
    while day.year == 2026 and day < D("2026-12-20"):
        if CAL.is_working_day(day):
            for n in (1, 2, 7):
                assert CAL.add_working_days(CAL.add_working_days(day, n), -n) == day
        day += timedelta(days=1)


def test_next_and_previous_working_day() -> None:
    assert CAL.next_working_day(D("2026-10-01")) == D("2026-10-08")
    assert CAL.next_working_day(D("2026-10-08")) == D("2026-10-08")
    assert CAL.next_working_day(D("2026-10-08"), include=False) == D("2026-10-09")
    assert CAL.next_working_day(D("2026-10-09"), include=False) == D("2026-10-10")
    assert CAL.previous_working_day(D("2026-10-07")) == D("2026-09-30")
    assert CAL.previous_working_day(D("2026-09-30")) == D("2026-09-30")
    assert CAL.previous_working_day(D("2026-09-30"), include=False) == D("2026-09-29")
    assert CAL.previous_working_day(D("2026-09-21"), include=False) == D("2026-09-20")


@pytest.mark.parametrize(
    ("year", "month", "first", "last"),
    [
        (2026, 1, "2026-01-04", "2026-01-30"),  # first is the make-up Sunday
        (2026, 2, "2026-02-02", "2026-02-28"),  # last is the make-up Saturday
        (2026, 5, "2026-05-06", "2026-05-29"),
        (2026, 9, "2026-09-01", "2026-09-30"),
        (2026, 10, "2026-10-08", "2026-10-30"),
        (2026, 12, "2026-12-01", "2026-12-31"),
    ],
)
def test_first_and_last_working_day(year: int, month: int, first: str, last: str) -> None:
    assert CAL.first_working_day(year, month) == D(first)
    assert CAL.last_working_day(year, month) == D(last)


def test_make_up_day_in_the_year_before_its_exchange() -> None:
    # special_public_holidays[2002] has (1, 2, 12, 29, 2001): worked Sat 2001-12-29.
    assert CAL.is_working_day(D("2001-12-29"))
    assert not CAL.is_working_day(D("2002-01-02"))


def test_one_off_holidays_are_days_off_not_exchanges() -> None:
    assert CAL.day_off_name(D("2015-09-03")) is not None  # 70th anniversary of victory
    assert CAL.is_working_day(D("2015-09-06"))  # the Sunday worked for 2015-09-04
    assert not CAL.is_working_day(D("2020-01-31"))  # Spring Festival extended for COVID-19
    assert CAL.add_working_days(D("2020-01-23"), 1) == D("2020-02-03")


def test_published_range_follows_the_library() -> None:
    assert CAL.first_published == 2001
    assert CAL.last_published == max(ChinaStaticHolidays.special_public_holidays)
    assert default_calendar() is default_calendar()
    assert default_calendar().last_published == CAL.last_published


@pytest.mark.parametrize("year", [CAL.last_published + 1, CAL.last_published + 5, 2000, 1999])
def test_unpublished_year_is_refused(year: int) -> None:
    with pytest.raises(CalendarNotPublished) as caught:
        CAL.is_working_day(date(year, 3, 2))
    assert caught.value.year == year
    assert caught.value.last_published == CAL.last_published
    assert f"for {year} is not published" in str(caught.value)
    with pytest.raises(CalendarNotPublished):
        CAL.day_off_name(date(year, 3, 2))


def test_walking_into_an_unpublished_year_is_refused() -> None:
    last = CAL.last_published
    december_end = CAL.last_working_day(last, 12)
    assert december_end.year == last
    with pytest.raises(CalendarNotPublished) as caught:
        CAL.add_working_days(december_end, 1)
    assert caught.value.year == last + 1
    with pytest.raises(CalendarNotPublished):
        CAL.first_working_day(last + 1, 1)
    with pytest.raises(CalendarNotPublished):
        CAL.previous_working_day(date(2001, 1, 1), include=False)


def test_site_publishes_a_year_ahead_of_the_library() -> None:
    year = CAL.last_published + 1
    march = [date(year, 3, d) for d in range(1, 8)]
    monday = next(d for d in march if d.weekday() == 0)
    saturday = next(d for d in march if d.weekday() == 5)
    cal = WorkCalendar(
        published_through=year, extra_days_off=[monday], extra_working_days=[saturday]
    )
    assert cal.last_published == year
    assert cal.day_off_name(date(year, 1, 1)) == "New Year's Day"  # statutory, from the library
    assert cal.day_off_name(monday) == SITE_DAY_OFF
    assert cal.is_working_day(saturday)
    assert cal.is_working_day(monday + timedelta(days=1))
    with pytest.raises(CalendarNotPublished):
        cal.is_working_day(date(year + 1, 3, 2))


def test_raised_year_takes_no_observed_guesses_from_the_library() -> None:
    if CAL.last_published >= 2028:
        pytest.skip("the installed holidays package already knows 2028")
    cal = WorkCalendar(published_through=2028)
    # The library guesses 2028-01-03 as "New Year's Day (observed)"; only the notice can say.
    assert cal.is_working_day(D("2028-01-03"))
    assert cal.day_off_name(D("2028-01-01")) == "New Year's Day"
    assert cal.day_off_name(D("2028-01-26")) == "Chinese New Year (Spring Festival)"
    assert cal.is_working_day(D("2028-02-29"))


def test_site_days_override_the_library() -> None:
    cal = WorkCalendar(
        extra_days_off=[D("2026-03-02"), D("2026-02-14")],
        extra_working_days=[D("2026-10-07"), D("2026-03-07")],
    )
    assert cal.day_off_name(D("2026-03-02")) == SITE_DAY_OFF
    assert cal.day_off_name(D("2026-02-14")) == SITE_DAY_OFF  # was a make-up Saturday
    assert cal.is_working_day(D("2026-10-07"))  # was a day off
    assert cal.is_working_day(D("2026-03-07"))  # a Saturday
    assert cal.add_working_days(D("2026-02-13"), 1) == D("2026-02-24")
    assert CAL.is_working_day(D("2026-03-02"))  # other calendars are not affected


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="both as a day off and as a working day"):
        WorkCalendar(extra_days_off=[D("2026-03-02")], extra_working_days=[D("2026-03-02")])
    with pytest.raises(ValueError, match="published_through 2000"):
        WorkCalendar(published_through=2000)
    with pytest.raises(TypeError, match="dates, not the datetime"):
        WorkCalendar(extra_days_off=[datetime.fromisoformat("2026-03-02T00:00+08:00")])


def test_a_datetime_is_not_a_day() -> None:
    with pytest.raises(TypeError, match="takes a date"):
        CAL.is_working_day(datetime.fromisoformat("2026-03-02T09:00+08:00"))


def test_each_year_is_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[int] = []

    def counting(country: str, **kwargs: Any) -> HolidayBase:
        built.append(kwargs["years"])
        return country_holidays(country, **kwargs)

    monkeypatch.setattr("crmd.calendar.workcal.country_holidays", counting)
    cal = WorkCalendar()
    for _ in range(3):
        cal.add_working_days(D("2025-12-20"), 30)
    assert sorted(built) == [2025, 2026]
