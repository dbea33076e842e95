"""Durations and times of day from rule files, applied in local time across DST."""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml

from crmd.calendar.offsets import (
    WALL_CLOCK_SLACK,
    Offset,
    add_months,
    align,
    local_datetime,
    parse_offset,
    parse_time_of_day,
    to_local,
)
from crmd.calendar.workcal import WorkCalendar
from crmd.errors import CalendarNotPublished

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
CAL = WorkCalendar()


def local(text: str, tz: ZoneInfo = SH, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz, fold=fold)


def elapsed(start: datetime, end: datetime) -> timedelta:
    """Real time between two datetimes (same-zone subtraction would give wall-clock time)."""
    return end.astimezone(UTC) - start.astimezone(UTC)


def iso(text: str) -> str:
    """The isoformat of a local time with offset: compares wall time and offset, fold included.

    (== between aware datetimes in one zone ignores fold, and across zones a time in a
    repeated hour never compares equal, so tests compare isoformat strings.)
    """
    return datetime.fromisoformat(text).isoformat()


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("3 days", 3, "days"),
        ("1 day", 1, "days"),
        ("0 days", 0, "days"),
        ("2 weeks", 2, "weeks"),
        ("1 week", 1, "weeks"),
        ("90 minutes", 90, "minutes"),
        ("90 min", 90, "minutes"),
        ("1 minute", 1, "minutes"),
        ("4 hours", 4, "hours"),
        ("1 hour", 1, "hours"),
        ("6 months", 6, "months"),
        ("1 month", 1, "months"),
        ("3 working days", 3, "working_days"),
        ("1 working day", 1, "working_days"),
        ("2 working_days", 2, "working_days"),
        ("  3   Working   Days ", 3, "working_days"),
        ("3 DAYS", 3, "days"),
        ("3days", 3, "days"),
        ("3天", 3, "days"),
        ("3 天", 3, "days"),
        ("2小时", 2, "hours"),
        ("30分钟", 30, "minutes"),
        ("2周", 2, "weeks"),
        ("6个月", 6, "months"),
        ("3个工作日", 3, "working_days"),
        ("3 工作日", 3, "working_days"),
    ],
)
def test_parse_offset_accepts(text: str, amount: int, unit: str) -> None:
    assert parse_offset(text) == Offset(amount, unit)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text", ["3 dayz", "days", "3", "three days", "3.5 days", "", "3 days 2 hours", "3 fortnights"]
)
def test_parse_offset_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration") as caught:
        parse_offset(text)
    message = str(caught.value)
    assert repr(text) in message
    for form in ("'3 days'", "'2 working days'", "'4 hours'", "'6 months'"):
        assert form in message


@pytest.mark.parametrize("text", ["-3 days", "-1 working day", "-0 hours"])
def test_parse_offset_rejects_negative_amounts(text: str) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        parse_offset(text)


def test_parse_offset_rejects_a_bare_number() -> None:
    with pytest.raises(ValueError, match="needs a unit"):
        parse_offset(3)


@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (Offset(3, "working_days"), "3 working days"),
        (Offset(1, "working_days"), "1 working day"),
        (Offset(0, "days"), "0 days"),
        (Offset(1, "days"), "1 day"),
        (Offset(2, "weeks"), "2 weeks"),
        (Offset(90, "minutes"), "90 minutes"),
        (Offset(1, "hours"), "1 hour"),
        (Offset(6, "months"), "6 months"),
    ],
)
def test_str_is_canonical_and_parses_back(offset: Offset, text: str) -> None:
    assert str(offset) == text
    assert parse_offset(text) == offset


def test_offset_checks_its_fields() -> None:
    with pytest.raises(ValueError, match="negative"):
        Offset(-1, "days")
    with pytest.raises(ValueError, match="is not a unit"):
        Offset(1, "fortnights")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Offset(True, "days")


def test_day_based() -> None:
    assert not Offset(1, "minutes").day_based
    assert not Offset(1, "hours").day_based
    assert all(Offset(1, u).day_based for u in ("days", "weeks", "months", "working_days"))


@pytest.mark.parametrize(
    ("start", "offset", "expected"),
    [
        # Elapsed time: 01:30 EST + 1 hour is 03:30 EDT on the night clocks go forward.
        ("2026-03-08T01:30", "1 hour", "2026-03-08T03:30-04:00"),
        ("2026-11-01T00:30", "90 minutes", "2026-11-01T01:00-05:00"),
        # Calendar days keep the wall-clock time: 23 real hours here, 25 in November.
        ("2026-03-07T09:00", "1 day", "2026-03-08T09:00-04:00"),
        ("2026-10-31T09:00", "1 day", "2026-11-01T09:00-05:00"),
        ("2026-03-01T09:00", "2 weeks", "2026-03-15T09:00-04:00"),
        # A skipped wall time moves on by the gap; a repeated one is its first pass.
        ("2026-03-07T02:30", "1 day", "2026-03-08T03:30-04:00"),
        ("2026-10-31T01:30", "1 day", "2026-11-01T01:30-04:00"),
        ("2026-02-08T02:30", "1 month", "2026-03-08T03:30-04:00"),
    ],
)
def test_apply_across_dst(start: str, offset: str, expected: str) -> None:
    result = parse_offset(offset).apply(local(start, NY), NY, CAL)
    assert result.isoformat() == datetime.fromisoformat(expected).isoformat()  # wall and offset
    assert result.tzinfo is NY


def test_apply_elapsed_vs_wall_clock_lengths() -> None:
    t = local("2026-03-07T09:00", NY)
    assert elapsed(t, Offset(1, "days").apply(t, NY, CAL)) == timedelta(hours=23)
    assert elapsed(t, Offset(24, "hours").apply(t, NY, CAL)) == timedelta(hours=24)
    assert Offset(24, "hours").apply(t, NY, CAL).isoformat() == iso("2026-03-08T10:00-04:00")
    fall = local("2026-10-31T09:00", NY)
    assert elapsed(fall, Offset(1, "days").apply(fall, NY, CAL)) == timedelta(hours=25)


def test_apply_keeps_the_second_pass_of_a_repeated_hour() -> None:
    second = local("2026-11-01T01:30", NY, fold=1)  # 01:30 EST, after 01:30 EDT
    assert second.utcoffset() == timedelta(hours=-5)
    for text in ("0 days", "0 months", "0 weeks"):
        assert parse_offset(text).apply(second, NY, CAL).isoformat() == iso(
            "2026-11-01T01:30-05:00"
        )
    one_day = Offset(1, "days").apply(second, NY, CAL)
    assert one_day.isoformat() == iso("2026-11-02T01:30-05:00")
    assert elapsed(second, one_day) == timedelta(hours=24)


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2026-01-31", 1, "2026-02-28"),
        ("2028-01-31", 1, "2028-02-29"),
        ("2026-03-31", 1, "2026-04-30"),
        ("2026-08-31", 6, "2027-02-28"),
        ("2026-12-15", 1, "2027-01-15"),
        ("2026-01-30", 13, "2027-02-28"),
        ("2026-05-10", 0, "2026-05-10"),
        ("2026-05-10", 24, "2028-05-10"),
    ],
)
def test_months_clamp_to_the_month_end(start: str, months: int, expected: str) -> None:
    assert add_months(date.fromisoformat(start), months) == date.fromisoformat(expected)
    t = local(start + "T15:45")
    assert Offset(months, "months").apply(t, SH, CAL) == local(expected + "T15:45")


@pytest.mark.parametrize(
    ("start", "offset", "expected"),
    [
        ("2026-02-13T15:00", "1 working day", "2026-02-14T15:00"),  # make-up Saturday
        ("2026-02-13T15:00", "2 working days", "2026-02-24T15:00"),
        ("2026-09-30T10:00", "1 working day", "2026-10-08T10:00"),
        ("2026-10-01T10:00", "0 working days", "2026-10-08T10:00"),
        ("2026-10-08T10:00", "0 working days", "2026-10-08T10:00"),
        ("2026-03-06T18:00", "3个工作日", "2026-03-11T18:00"),
        ("2026-12-31T09:00", "3 days", "2027-01-03T09:00"),  # days need no calendar
    ],
)
def test_apply_in_shanghai(start: str, offset: str, expected: str) -> None:
    assert parse_offset(offset).apply(local(start), SH, CAL) == local(expected)


def test_apply_takes_any_zone_and_answers_in_the_site_zone() -> None:
    t = datetime.fromisoformat("2026-02-13T07:00+00:00")  # 15:00 in Shanghai
    result = Offset(1, "working_days").apply(t, SH, CAL)
    assert result.tzinfo is SH
    assert result.isoformat() == "2026-02-14T15:00:00+08:00"
    minutes = Offset(90, "minutes").apply(t, SH, CAL)
    assert minutes.tzinfo is SH
    assert minutes.isoformat() == "2026-02-13T16:30:00+08:00"
    # 2026-02-13 20:00 UTC is already the 14th in Shanghai: the local date counts.
    late = datetime.fromisoformat("2026-02-13T20:00+00:00")
    assert Offset(1, "working_days").apply(late, SH, CAL) == local("2026-02-24T04:00")


def test_working_days_into_an_unpublished_year_are_refused() -> None:
    t = local(f"{CAL.last_published}-12-31T09:00")
    with pytest.raises(CalendarNotPublished):
        Offset(5, "working_days").apply(t, SH, CAL)


def test_naive_datetimes_are_refused() -> None:
    naive = datetime.fromisoformat("2026-03-02T09:00")
    with pytest.raises(ValueError, match="naive"):
        Offset(1, "days").apply(naive, SH, CAL)
    with pytest.raises(ValueError, match="naive"):
        align(naive, time(9), SH)
    with pytest.raises(ValueError, match="naive"):
        to_local(naive, SH)


def test_bounds_of_fixed_units() -> None:
    assert Offset(90, "minutes").bounds() == (timedelta(minutes=90), timedelta(minutes=90))
    assert Offset(4, "hours").bounds() == (timedelta(hours=4), timedelta(hours=4))
    assert Offset(0, "days").bounds() == (timedelta(0), timedelta(0))
    assert Offset(3, "days").bounds() == (
        timedelta(days=3) - WALL_CLOCK_SLACK,
        timedelta(days=3) + WALL_CLOCK_SLACK,
    )
    assert Offset(2, "weeks").bounds()[1] == timedelta(days=14) + WALL_CLOCK_SLACK
    assert Offset(2, "months").bounds() == (
        timedelta(days=56) - WALL_CLOCK_SLACK,
        timedelta(days=62) + WALL_CLOCK_SLACK,
    )
    assert Offset(0, "working_days").bounds() == (
        timedelta(0),
        timedelta(days=12) + WALL_CLOCK_SLACK,
    )


@pytest.mark.parametrize("tz", [SH, NY])
@pytest.mark.parametrize(
    "offset", ["1 day", "3 days", "1 week", "1 month", "6 months", "2 working days", "5 hours"]
)
def test_apply_stays_within_bounds(tz: ZoneInfo, offset: str) -> None:
    parsed = parse_offset(offset)
    low, high = parsed.bounds()
    t = datetime(2026, 1, 1, 1, 30, tzinfo=tz)
    while t.year == 2026 and t.month < 12:
        span = elapsed(t, parsed.apply(t, tz, CAL))
        assert low <= span <= high, (t, span)
        t += timedelta(hours=37)


def test_working_day_bounds_hold_in_every_published_year() -> None:
    """Check Offset.bounds() for working days against the whole published calendar."""
    first, last = date(CAL.first_published, 1, 1), date(CAL.last_published, 12, 31)
    working, day = [], first
    while day <= last:
        if CAL.is_working_day(day):
            working.append(day)
        day += timedelta(days=1)
    for n in (0, 1, 2, 3, 5, 7, 10, 20, 50, 100, 250, 500, 1000):
        low, high = Offset(n, "working_days").bounds()
        longest = shortest = None
        day = first
        while True:
            i = bisect.bisect_right(working, day) if n else bisect.bisect_left(working, day)
            if i + max(n - 1, 0) >= len(working):
                break
            span = (working[i + max(n - 1, 0)] - day).days
            longest = span if longest is None else max(longest, span)
            shortest = span if shortest is None else min(shortest, span)
            day += timedelta(days=1)
        assert longest is not None
        assert shortest is not None
        assert timedelta(days=shortest) >= low, n
        assert timedelta(days=longest) <= high, n


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("09:00", time(9)),
        ("9:30", time(9, 30)),
        ("17:00", time(17)),
        ("00:00", time(0)),
        ("23:59", time(23, 59)),
        (" 08:05 ", time(8, 5)),
        ("９：３０", time(9, 30)),
        (570, time(9, 30)),  # YAML 1.1 reads unquoted 9:30 as 9 * 60 + 30
        (0, time(0)),
        (1439, time(23, 59)),
    ],
)
def test_parse_time_of_day(text: str | int, expected: time) -> None:
    assert parse_time_of_day(text) == expected


@pytest.mark.parametrize(
    "text", ["25:00", "24:00", "9:60", "9", "09:30:00", "", "nine", "9.30", 1440, -1, True, 9.5]
)
def test_parse_time_of_day_rejects(text: object) -> None:
    with pytest.raises(ValueError, match="is not a time of day: write HH:MM") as caught:
        parse_time_of_day(text)  # type: ignore[arg-type]
    assert "'09:30'" in str(caught.value)


def test_yaml_times_of_day() -> None:
    loaded = yaml.safe_load("a: 9:30\nb: '09:30'\nc: 09:30\nd: 17:00\ne: 9:30:00")
    assert loaded["a"] == 570  # the trap this accepts
    assert loaded["e"] == 34200  # ... and this it refuses
    assert [parse_time_of_day(loaded[k]) for k in "abcd"] == [time(9, 30)] * 3 + [time(17)]
    with pytest.raises(ValueError, match="in quotes"):
        parse_time_of_day(loaded["e"])


def test_align() -> None:
    t = datetime.fromisoformat("2026-03-01T20:00+00:00")  # 04:00 on 2 March in Shanghai
    assert align(t, time(9), SH) == local("2026-03-02T09:00")
    assert align(t, time(3), SH) == local("2026-03-02T03:00")  # may be before t
    assert align(t, time(9), SH).tzinfo is SH
    gap = align(local("2026-03-08T12:00", NY), time(2, 30), NY)
    assert gap.isoformat() == iso("2026-03-08T03:30-04:00")
    repeated = align(local("2026-11-01T12:00", NY), time(1, 30), NY)
    assert repeated.isoformat() == iso("2026-11-01T01:30-04:00")


def test_local_datetime_normalises() -> None:
    gap = local_datetime(date(2026, 3, 8), time(2, 30), NY)
    assert (gap.hour, gap.minute, gap.utcoffset()) == (3, 30, timedelta(hours=-4))
    repeated = local_datetime(date(2026, 11, 1), time(1, 30, fold=1), NY)
    assert repeated.fold == 0
    assert repeated.astimezone(UTC) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
