"""Calendar schedules: exact fire times, month ends, working days, DST and the YAML forms."""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from crmd.calendar.schedule_spec import ScheduleSpecError, schedule_from_spec
from crmd.calendar.schedules import (
    CronSchedule,
    DailySchedule,
    MonthlySchedule,
    Schedule,
    WeeklySchedule,
    occurrences,
    quarterly,
)
from crmd.calendar.spec_words import parse_cron
from crmd.calendar.workcal import WorkCalendar
from crmd.errors import CalendarNotPublished

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
CAL = WorkCalendar()
NINE = time(9)


class NoCalendar(WorkCalendar):
    """A calendar that fails the test if a schedule asks it anything."""

    def is_working_day(self, d: date) -> bool:
        raise AssertionError(f"the calendar was consulted about {d}")


NO_CAL = NoCalendar()


def at(text: str, tz: ZoneInfo = SH) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def fires(schedule: Schedule, start: str, end: str, tz: ZoneInfo = SH) -> list[str]:
    """Fire times in (start, end] as local isoformat strings (wall time and offset)."""
    return [f.isoformat() for f in occurrences(schedule, at(start, tz), at(end, tz))]


def days(schedule: Schedule, start: str, end: str) -> list[str]:
    return [f.date().isoformat() for f in occurrences(schedule, at(start), at(end))]


def assert_strictly_increasing(schedule: Schedule, start: datetime, hours: int) -> None:
    """Fires never repeat or go back, and next_after(t) is the first of them after t."""
    end = start + timedelta(days=360)
    utc = [f.astimezone(UTC) for f in occurrences(schedule, start, end)]
    assert utc == sorted(set(utc))
    t = start
    while t < end - timedelta(days=40):
        expected = utc[bisect.bisect_right(utc, t.astimezone(UTC))]
        assert schedule.next_after(t).astimezone(UTC) == expected, t
        t += timedelta(hours=hours)


# -- daily --------------------------------------------------------------------------------


def test_daily_fires_once_a_day_across_both_dst_changes() -> None:
    daily = DailySchedule(time(2, 30), NY, NO_CAL)
    assert daily.next_after(at("2026-03-08T03:10", NY)).isoformat() == "2026-03-08T03:30:00-04:00"
    march = fires(daily, "2026-03-06T12:00", "2026-03-10T12:00", NY)
    assert march == [
        "2026-03-07T02:30:00-05:00",
        "2026-03-08T03:30:00-04:00",  # 02:30 does not exist that night: on by the gap
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]
    november = fires(daily, "2026-10-30T12:00", "2026-11-03T12:00", NY)
    assert november == [
        "2026-10-31T02:30:00-04:00",
        "2026-11-01T02:30:00-05:00",
        "2026-11-02T02:30:00-05:00",
        "2026-11-03T02:30:00-05:00",
    ]


def test_daily_in_the_repeated_hour_fires_on_its_first_pass_only() -> None:
    daily = DailySchedule(time(1, 30), NY, NO_CAL)
    assert fires(daily, "2026-10-31T12:00", "2026-11-02T12:00", NY) == [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
    ]
    first_pass = datetime.fromisoformat("2026-11-01T01:30-04:00")
    second_pass = datetime.fromisoformat("2026-11-01T01:45-05:00")
    assert daily.next_after(first_pass).isoformat() == "2026-11-02T01:30:00-05:00"
    # t in the second pass, in New York's own zone object (same-zone comparison ignores fold):
    t = second_pass.astimezone(NY)
    assert t.fold == 1
    assert daily.next_after(t).isoformat() == "2026-11-02T01:30:00-05:00"
    # 01:15 in the second pass is after 01:30 in the first, though its wall time is earlier.
    later = datetime.fromisoformat("2026-11-01T01:15-05:00").astimezone(NY)
    assert daily.next_after(later).isoformat() == "2026-11-02T01:30:00-05:00"


def test_daily_next_after_is_strict_and_in_the_site_zone() -> None:
    daily = DailySchedule(time(9, 30), SH, NO_CAL)
    assert daily.next_after(at("2026-03-02T09:29")) == at("2026-03-02T09:30")
    assert daily.next_after(at("2026-03-02T09:30")) == at("2026-03-03T09:30")
    late_utc = datetime.fromisoformat("2026-03-02T02:00+00:00")  # 10:00 in Shanghai
    fire = daily.next_after(late_utc)
    assert fire.tzinfo is SH
    assert fire.isoformat() == "2026-03-03T09:30:00+08:00"
    # Calendar days need no working calendar, even in years not published.
    assert daily.next_after(at("2030-02-28T10:00")) == at("2030-03-01T09:30")


def test_daily_on_working_days_over_the_spring_festival() -> None:
    daily = DailySchedule(time(9, 30), SH, CAL, working_days_only=True)
    assert days(daily, "2026-02-12T12:00", "2026-02-25T12:00") == [
        "2026-02-13",
        "2026-02-14",  # make-up Saturday
        "2026-02-24",
        "2026-02-25",
    ]
    assert days(daily, "2026-09-29T12:00", "2026-10-12T12:00") == [
        "2026-09-30",
        "2026-10-08",
        "2026-10-09",
        "2026-10-10",  # make-up Saturday
        "2026-10-12",
    ]
    assert daily.next_after(at("2026-01-01T00:00")) == at("2026-01-04T09:30")  # make-up Sunday


def test_daily_on_working_days_refuses_an_unpublished_year() -> None:
    daily = DailySchedule(time(9, 30), SH, CAL, working_days_only=True)
    last = CAL.last_published
    assert daily.next_after(at(f"{last}-12-30T10:00")) == at(f"{last}-12-31T09:30")
    with pytest.raises(CalendarNotPublished):
        daily.next_after(at(f"{last}-12-31T10:00"))


def test_a_window_ending_in_a_published_year_never_needs_the_next_years_calendar() -> None:
    """Asking for the fires up to Dec 31 must not fail because January's are unknowable."""
    last = CAL.last_published
    daily = DailySchedule(time(9, 30), SH, CAL, working_days_only=True)
    assert days(daily, f"{last}-12-30T10:00", f"{last}-12-31T23:59") == [f"{last}-12-31"]
    for day_words in (("first_working_day",), ("last_working_day",)):
        monthly = MonthlySchedule(day_words, NINE, SH, CAL)
        assert len(days(monthly, f"{last}-11-30T10:00", f"{last}-12-31T23:59")) == 1
    # January's 15th moved back could in principle reach December, but the walk back meets
    # a known working day (Dec 31) after the window first: the unknown days cannot matter.
    tracking = MonthlySchedule((15, 30), NINE, SH, CAL, shift="previous_working_day")
    assert days(tracking, f"{last}-12-01T00:00", f"{last}-12-30T23:59") == [
        str(CAL.previous_working_day(date(last, 12, 15))),
        str(CAL.previous_working_day(date(last, 12, 30))),
    ]
    month_end = MonthlySchedule(("last",), NINE, SH, CAL, shift="previous_working_day")
    dec_31 = CAL.previous_working_day(date(last, 12, 31))
    assert days(month_end, f"{last}-12-01T00:00", f"{dec_31}T09:00") == [str(dec_31)]


def test_a_window_a_shifted_fire_of_an_unpublished_year_could_reach_is_an_error() -> None:
    """Jan 1 moved back lands on Dec 31 if Jan 1 is a day off: unknowable, so refused."""
    last = CAL.last_published
    dec_31 = CAL.previous_working_day(date(last, 12, 31))
    first = MonthlySchedule((1,), NINE, SH, CAL, shift="previous_working_day")
    with pytest.raises(CalendarNotPublished) as caught:
        days(first, f"{dec_31}T08:00", f"{dec_31}T10:00")
    assert caught.value.year == last + 1
    with pytest.raises(CalendarNotPublished):
        days(
            DailySchedule(NINE, SH, CAL, working_days_only=True),
            f"{last}-12-31",
            f"{last + 1}-01-05",
        )


# -- weekly -------------------------------------------------------------------------------


def test_weekly() -> None:
    weekly = WeeklySchedule((3, 0, 3), time(12), SH)
    assert weekly.weekdays == (0, 3)
    assert days(weekly, "2026-03-01T00:00", "2026-03-16T12:00") == [
        "2026-03-02",
        "2026-03-05",
        "2026-03-09",
        "2026-03-12",
        "2026-03-16",
    ]
    assert weekly.next_after(at("2026-03-05T12:00")) == at("2026-03-09T12:00")
    assert weekly.next_after(at("2026-03-05T11:59")) == at("2026-03-05T12:00")
    assert weekly.describe() == "weekly on Monday, Thursday at 12:00"


@pytest.mark.parametrize("weekdays", [(), (7,), (-1,), (True,)])
def test_weekly_checks_weekdays(weekdays: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="0 \\(Monday\\) to 6 \\(Sunday\\)"):
        WeeklySchedule(weekdays, NINE, SH)


# -- monthly ------------------------------------------------------------------------------


def test_monthly_on_day_10() -> None:
    monthly = MonthlySchedule((10,), NINE, SH, NO_CAL)
    assert monthly.next_after(at("2026-03-10T08:59")) == at("2026-03-10T09:00")
    assert monthly.next_after(at("2026-03-10T09:00")) == at("2026-04-10T09:00")
    assert monthly.next_after(at("2026-12-10T09:00")) == at("2027-01-10T09:00")
    assert monthly.describe() == "monthly on day 10 at 09:00"


def test_monthly_15_and_30_in_february() -> None:
    monthly = MonthlySchedule((30, 15), NINE, SH, NO_CAL)
    assert days(monthly, "2026-01-20T00:00", "2026-03-31T00:00") == [
        "2026-01-30",
        "2026-02-15",
        "2026-02-28",  # 30 means the last day in a short month
        "2026-03-15",
        "2026-03-30",
    ]
    assert days(monthly, "2028-02-01T00:00", "2028-03-01T00:00") == ["2028-02-15", "2028-02-29"]
    assert monthly.describe() == "monthly on days 15, 30 at 09:00"


def test_two_days_landing_on_one_date_fire_once() -> None:
    monthly = MonthlySchedule((29, 30, 31), NINE, SH, NO_CAL)
    assert days(monthly, "2026-02-01T00:00", "2026-05-01T00:00") == [
        "2026-02-28",
        "2026-03-29",
        "2026-03-30",
        "2026-03-31",
        "2026-04-29",
        "2026-04-30",
    ]


@pytest.mark.parametrize(
    ("t", "expected"),
    [
        ("2026-01-15T00:00", "2026-01-31"),
        ("2026-02-01T00:00", "2026-02-28"),
        ("2026-04-01T00:00", "2026-04-30"),
        ("2026-12-31T17:00", "2027-01-31"),
        ("2028-02-01T00:00", "2028-02-29"),  # leap year, no working calendar needed
        ("2100-02-01T00:00", "2100-02-28"),  # not a leap year
    ],
)
def test_monthly_last_day(t: str, expected: str) -> None:
    monthly = MonthlySchedule(("last",), time(17), SH, NO_CAL)
    assert monthly.next_after(at(t)) == at(expected + "T17:00")
    assert monthly.describe() == "monthly on the last day at 17:00"


@pytest.mark.parametrize(
    ("spec", "t", "expected"),
    [
        ("first_working_day", "2026-09-30T12:00", "2026-10-08"),
        ("first_working_day", "2026-01-20T12:00", "2026-02-02"),
        ("first_working_day", "2025-12-20T12:00", "2026-01-04"),  # make-up Sunday
        ("first_working_day", "2001-01-01T00:00", "2001-01-02"),  # never asks about 2000
        ("last_working_day", "2026-02-01T12:00", "2026-02-28"),  # make-up Saturday
        ("last_working_day", "2026-09-01T12:00", "2026-09-30"),
        ("last_working_day", "2026-09-30T09:00", "2026-10-30"),
    ],
)
def test_monthly_working_day_specs(spec: Any, t: str, expected: str) -> None:
    monthly = MonthlySchedule((spec,), NINE, SH, CAL)
    assert monthly.next_after(at(t)) == at(expected + "T09:00")


def test_first_working_day_in_a_raised_year() -> None:
    cal = WorkCalendar(published_through=max(2028, CAL.last_published))
    monthly = MonthlySchedule(("first_working_day", "last_working_day"), NINE, SH, cal)
    assert days(monthly, "2028-02-15T00:00", "2028-03-15T00:00") == ["2028-02-29", "2028-03-01"]


@pytest.mark.parametrize(
    ("shift", "t", "expected"),
    [
        ("previous_working_day", "2026-01-01T00:00", "2026-01-09"),  # Sat 10th -> Fri 9th
        ("previous_working_day", "2026-05-01T00:00", "2026-05-09"),  # Sun 10th -> make-up Sat
        ("previous_working_day", "2026-10-01T00:00", "2026-10-10"),  # a make-up Saturday stays
        ("previous_working_day", "2026-01-09T09:00", "2026-02-10"),
        ("previous_working_day", "2026-01-09T08:59", "2026-01-09"),
        ("next_working_day", "2026-01-01T00:00", "2026-01-12"),  # Sat 10th -> Mon 12th
        ("next_working_day", "2026-01-10T12:00", "2026-01-12"),  # moved past t: still fires
        ("next_working_day", "2026-01-12T09:00", "2026-02-10"),
        ("none", "2026-01-01T00:00", "2026-01-10"),
    ],
)
def test_monthly_shift(shift: Any, t: str, expected: str) -> None:
    monthly = MonthlySchedule((10,), NINE, SH, CAL, shift=shift)
    assert monthly.next_after(at(t)) == at(expected + "T09:00")


def test_shift_next_carries_into_the_next_month() -> None:
    monthly = MonthlySchedule((31,), NINE, SH, CAL, shift="next_working_day")
    # 31 Jan 2026 is a Saturday: it fires on Monday 2 February, then on the make-up
    # Saturday 28 February (31 clamped), then Tuesday 31 March.
    assert days(monthly, "2026-01-20T00:00", "2026-04-01T00:00") == [
        "2026-02-02",
        "2026-02-28",
        "2026-03-31",
    ]
    assert monthly.next_after(at("2026-02-01T00:00")) == at("2026-02-02T09:00")
    assert monthly.describe() == (
        "monthly on day 31 at 09:00, moved to the next working day if a day off"
    )


def test_shift_previous_carries_into_the_previous_month() -> None:
    monthly = MonthlySchedule((1,), NINE, SH, CAL, shift="previous_working_day")
    assert days(monthly, "2025-11-15T00:00", "2026-03-15T00:00") == [
        "2025-12-01",
        "2025-12-31",  # for New Year's Day
        "2026-01-30",  # for Sunday 1 February
        "2026-02-28",  # for Sunday 1 March: the make-up Saturday
    ]
    assert monthly.next_after(at("2025-12-31T09:00")) == at("2026-01-30T09:00")


def test_shifted_days_that_meet_fire_once() -> None:
    # 3 and 5 October 2026 are both days off and both move to Thursday 8 October.
    monthly = MonthlySchedule((3, 5, 8), NINE, SH, CAL, shift="next_working_day")
    assert days(monthly, "2026-09-25T00:00", "2026-10-31T00:00") == ["2026-10-08"]
    backwards = MonthlySchedule((2, 5), NINE, SH, CAL, shift="previous_working_day")
    assert days(backwards, "2026-09-25T00:00", "2026-10-31T00:00") == ["2026-09-30"]


@pytest.mark.parametrize(
    "schedule",
    [
        MonthlySchedule((1, 10, 31), NINE, SH, CAL, shift="next_working_day"),
        MonthlySchedule((1, 10, 31), NINE, SH, CAL, shift="previous_working_day"),
        MonthlySchedule((1, "last_working_day", "first_working_day"), NINE, SH, CAL),
        MonthlySchedule((29, 30, 31, "last"), time(0), SH, NO_CAL),
        DailySchedule(time(9), SH, CAL, working_days_only=True),
        WeeklySchedule((0, 4), time(23, 59), SH),
        CronSchedule("*/30 1-3 * * *", NY),
        DailySchedule(time(1, 30), NY, NO_CAL),
    ],
)
def test_fires_strictly_increase(schedule: Schedule) -> None:
    assert_strictly_increasing(schedule, at("2025-06-01T00:00"), hours=23)


def test_monthly_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="not a day of the month"):
        MonthlySchedule((), NINE, SH, CAL)
    with pytest.raises(ValueError, match="not a day of the month"):
        MonthlySchedule((32,), NINE, SH, CAL)
    with pytest.raises(ValueError, match="months must be 1 to 12"):
        MonthlySchedule((1,), NINE, SH, CAL, months=(0,))
    with pytest.raises(ValueError, match="shift must be one of"):
        MonthlySchedule((1,), NINE, SH, CAL, shift="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="local, without a zone"):
        MonthlySchedule((1,), time(9, tzinfo=UTC), SH, CAL)


# -- quarterly ----------------------------------------------------------------------------


def test_quarterly() -> None:
    first = quarterly((1,), NINE, SH, NO_CAL)
    assert days(first, "2026-01-01T09:00", "2027-01-01T09:00") == [
        "2026-04-01",
        "2026-07-01",
        "2026-10-01",
        "2027-01-01",
    ]
    assert first.describe() == "quarterly on day 1 at 09:00"
    second = quarterly((15,), NINE, SH, NO_CAL, month_of_quarter=2)
    assert days(second, "2026-01-01T00:00", "2026-12-31T00:00") == [
        "2026-02-15",
        "2026-05-15",
        "2026-08-15",
        "2026-11-15",
    ]
    assert second.describe() == "quarterly on day 15 of month 2 of the quarter at 09:00"
    with pytest.raises(ValueError, match="month_of_quarter"):
        quarterly((1,), NINE, SH, CAL, month_of_quarter=4)


# -- cron ---------------------------------------------------------------------------------


def test_cron_weekdays_at_0930() -> None:
    cron = CronSchedule("30 9 * * 1-5", SH)
    assert days(cron, "2026-03-05T12:00", "2026-03-10T12:00") == [
        "2026-03-06",
        "2026-03-09",
        "2026-03-10",
    ]
    assert cron.next_after(at("2026-03-06T09:30")) == at("2026-03-09T09:30")
    assert cron.next_after(datetime.fromisoformat("2026-03-06T01:29+00:00")) == at(
        "2026-03-06T09:30"
    )
    assert cron.next_after(at("2026-03-06T09:00")).tzinfo is SH
    assert cron.describe() == "cron '30 9 * * 1-5'"


def test_cron_across_dst_fires_each_wall_time_once() -> None:
    daily = CronSchedule("30 2 * * *", NY)
    assert fires(daily, "2026-03-07T12:00", "2026-03-09T12:00", NY) == [
        "2026-03-08T03:30:00-04:00",  # like DailySchedule, not croniter's 03:00
        "2026-03-09T02:30:00-04:00",
    ]
    repeated = CronSchedule("30 1 * * *", NY)
    assert fires(repeated, "2026-10-31T12:00", "2026-11-02T12:00", NY) == [
        "2026-11-01T01:30:00-04:00",  # once, where aware croniter fires twice
        "2026-11-02T01:30:00-05:00",
    ]
    half_hourly = CronSchedule("*/30 * * * *", NY)
    assert fires(half_hourly, "2026-11-01T00:45", "2026-11-01T03:00", NY) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T02:30:00-05:00",
        "2026-11-01T03:00:00-05:00",
    ]
    # A time skipped in spring fires after the gap, even asked from within that hour.
    assert daily.next_after(at("2026-03-08T03:10", NY)).isoformat() == "2026-03-08T03:30:00-04:00"
    two_and_four = CronSchedule("10 2,4 * * *", NY)
    assert fires(two_and_four, "2026-03-08T03:00", "2026-03-08T05:00", NY) == [
        "2026-03-08T03:10:00-04:00",
        "2026-03-08T04:10:00-04:00",
    ]
    second_pass = datetime.fromisoformat("2026-11-01T01:15-05:00").astimezone(NY)
    assert half_hourly.next_after(second_pass).isoformat() == "2026-11-01T02:00:00-05:00"
    assert fires(half_hourly, "2026-03-08T01:15", "2026-03-08T04:00", NY) == [
        "2026-03-08T01:30:00-05:00",
        "2026-03-08T03:00:00-04:00",
        "2026-03-08T03:30:00-04:00",
        "2026-03-08T04:00:00-04:00",
    ]


def test_cron_normalises_and_accepts_aliases() -> None:
    assert CronSchedule("  30  9 * *   1-5 ", SH).expr == "30 9 * * 1-5"
    assert CronSchedule("@DAILY", SH).next_after(at("2026-03-02T12:00")) == at("2026-03-03T00:00")
    assert parse_cron("0 9 L * *") == "0 9 L * *"
    assert CronSchedule("0 0 29 2 *", SH).next_after(at("2026-03-01T00:00")) == at(
        "2028-02-29T00:00"
    )


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("* * * *", "5 fields"),
        ("0 9 * * * *", "5 fields"),
        ("61 * * * *", "out of range"),
        ("0 0 30 2 *", "matches no date"),
        ("R * * * *", "random"),
        ("H 9 * * *", "random"),
        ("0 r * * *", "random"),
        ("@reboot", "5 fields"),
        ("", "5 fields"),
        (42, "5 fields"),
    ],
)
def test_cron_rejects(expr: Any, reason: str) -> None:
    with pytest.raises(ValueError, match="is not a cron expression") as caught:
        CronSchedule(expr, SH)
    assert reason in str(caught.value)


def test_occurrences_are_start_exclusive_end_inclusive() -> None:
    daily = DailySchedule(NINE, SH, NO_CAL)
    found = list(occurrences(daily, at("2026-03-01T09:00"), at("2026-03-03T09:00")))
    assert found == [at("2026-03-02T09:00"), at("2026-03-03T09:00")]
    assert list(occurrences(daily, at("2026-03-01T09:00"), at("2026-03-01T09:00"))) == []
    utc_end = datetime.fromisoformat("2026-03-03T01:00+00:00")  # 09:00 in Shanghai
    assert len(list(occurrences(daily, at("2026-03-01T09:00"), utc_end))) == 2
    with pytest.raises(ValueError, match="naive"):
        list(occurrences(daily, at("2026-03-01T09:00"), datetime.fromisoformat("2026-03-03")))


# -- the YAML forms -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{cron: "30 9 * * 1-5"}', CronSchedule("30 9 * * 1-5", SH)),
        ('{daily: "09:30"}', DailySchedule(time(9, 30), SH, CAL)),
        ("{daily: 9:30}", DailySchedule(time(9, 30), SH, CAL)),
        ('{daily: "09:30", days: working}', DailySchedule(time(9, 30), SH, CAL, True)),
        ('{weekly: monday, at: "12:00"}', WeeklySchedule((0,), time(12), SH)),
        ("{weekly: [Thursday, mon]}", WeeklySchedule((0, 3), time(0), SH)),
        ("{weekly: [周一, 星期四, 周日]}", WeeklySchedule((0, 3, 6), time(0), SH)),
        ("{weekly: 星期天}", WeeklySchedule((6,), time(0), SH)),
        ('{monthly: 10, at: "09:00"}', MonthlySchedule((10,), NINE, SH, CAL)),
        ('{monthly: [15, 30], at: "09:00"}', MonthlySchedule((15, 30), NINE, SH, CAL)),
        ('{monthly: last, at: "17:00"}', MonthlySchedule(("last",), time(17), SH, CAL)),
        ("{monthly: first working day}", MonthlySchedule(("first_working_day",), time(0), SH, CAL)),
        ("{monthly: last_working_day}", MonthlySchedule(("last_working_day",), time(0), SH, CAL)),
        ('{monthly: "10"}', MonthlySchedule((10,), time(0), SH, CAL)),
        (
            '{monthly: 10, at: "09:00", shift: previous working day}',
            MonthlySchedule((10,), NINE, SH, CAL, shift="previous_working_day"),
        ),
        (
            "{monthly: 10, shift: next_working_day}",
            MonthlySchedule((10,), time(0), SH, CAL, shift="next_working_day"),
        ),
        ('{quarterly: 1, at: "09:00"}', quarterly((1,), NINE, SH, CAL)),
        (
            "{quarterly: last working day, shift: next working day}",
            quarterly(("last_working_day",), time(0), SH, CAL, shift="next_working_day"),
        ),
    ],
)
def test_schedule_from_spec(text: str, expected: Schedule) -> None:
    assert schedule_from_spec(yaml.safe_load(text), SH, CAL) == expected


@pytest.mark.parametrize(
    ("spec", "key", "words"),
    [
        ({}, None, "exactly one kind (found none)"),
        ({"daily": "09:30", "weekly": "monday"}, None, "found daily and weekly"),
        ({"at": "09:00"}, None, "found none"),
        ({"cron": "0 9 * * *", "at": "09:00"}, "at", "'at' does not go with cron"),
        ({"daily": "09:30", "shift": "next working day"}, "shift", "does not go with daily"),
        ({"weekly": "monday", "days": "working"}, "days", "does not go with weekly"),
        ({"monthly": 10, "every": 2}, "every", "does not go with monthly"),
        ({"cron": "0 9 * *"}, "cron", "is not a cron expression"),
        ({"daily": "25:00"}, "daily", "'25:00' is not a time of day"),
        ({"daily": "09:30", "days": "weekends"}, "days", "'weekends' is not a choice of days"),
        ({"weekly": "mondy"}, "weekly", "'mondy' is not a day of the week"),
        ({"weekly": []}, "weekly", "[] is not a day of the week"),
        ({"weekly": 1}, "weekly", "1 is not a day of the week"),
        ({"weekly": ["monday", "funday"]}, "weekly", "'funday' is not a day of the week"),
        ({"monthly": 32}, "monthly", "32 is not a day of the month"),
        ({"monthly": 0}, "monthly", "0 is not a day of the month"),
        ({"monthly": "first day"}, "monthly", "'first day' is not a day of the month"),
        ({"monthly": [15, True]}, "monthly", "True is not a day of the month"),
        ({"monthly": 10, "at": "9h"}, "at", "'9h' is not a time of day"),
        ({"monthly": 10, "shift": "sideways"}, "shift", "'sideways' is not a shift"),
        ({"quarterly": "middle"}, "quarterly", "'middle' is not a day of the month"),
    ],
)
def test_schedule_from_spec_errors(spec: dict[str, Any], key: str | None, words: str) -> None:
    with pytest.raises(ScheduleSpecError) as caught:
        schedule_from_spec(spec, SH, CAL)
    assert caught.value.key == key
    assert words in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_spec_errors_list_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r"write a day of the month 1\.\.31") as caught:
        schedule_from_spec({"monthly": 32}, SH, CAL)
    assert "'first working day'" in str(caught.value)
    with pytest.raises(ValueError, match=r"周一\.\.周日"):
        schedule_from_spec({"weekly": "mondy"}, SH, CAL)
    with pytest.raises(ValueError, match=r"\{daily: '09:30'\}"):
        schedule_from_spec({}, SH, CAL)


def test_describe() -> None:
    assert DailySchedule(time(9, 30), SH, CAL).describe() == "daily at 09:30"
    assert DailySchedule(time(9, 30), SH, CAL, True).describe() == "every working day at 09:30"
    both = MonthlySchedule((15, "last_working_day"), NINE, SH, CAL, months=(3, 6))
    assert both.describe() == "on day 15 and the last working day of Mar, Jun at 09:00"
    shifted = MonthlySchedule((10,), NINE, SH, CAL, shift="previous_working_day")
    assert shifted.describe() == (
        "monthly on day 10 at 09:00, moved to the previous working day if a day off"
    )


# -- statutory holidays -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("春节", ["2026-02-17", "2027-02-06", "2030-02-03"]),
        ("spring festival", ["2026-02-17", "2027-02-06", "2030-02-03"]),
        ("mid-autumn", ["2026-09-25", "2027-09-15", "2030-09-12"]),  # 2028: on National Day
        ("端午", ["2026-06-19", "2027-06-09", "2030-06-05"]),
        ("national day", ["2026-10-01", "2027-10-01", "2030-10-01"]),
    ],
)
def test_holiday_fires_on_the_festivals_first_day_in_every_year(
    words: str, expected: list[str]
) -> None:
    """Lunar festivals move; years whose official notice is unpublished still have dates."""
    schedule = schedule_from_spec({"holiday": words, "at": "09:00"}, SH, NO_CAL)
    found = days(schedule, "2026-01-01T00:00", "2030-12-31T23:59")
    assert len(found) == 5
    assert [found[0], found[1], found[4]] == expected
    first = at(expected[0] + "T09:00")
    assert schedule.next_after(first - timedelta(minutes=1)) == first
    assert schedule.next_after(first) == at(expected[1] + "T09:00")


def test_holiday_rejects_a_day_that_is_not_a_statutory_holiday() -> None:
    with pytest.raises(ScheduleSpecError, match="not one of China's statutory holidays") as caught:
        schedule_from_spec({"holiday": "christmas"}, SH, CAL)
    assert caught.value.key == "holiday"
    with pytest.raises(ScheduleSpecError, match="does not go with holiday"):
        schedule_from_spec({"holiday": "春节", "shift": "next working day"}, SH, CAL)
