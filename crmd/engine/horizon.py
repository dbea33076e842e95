"""The working calendar's end, seen ahead: which rules will soon need a year it does not know.

China's official calendar for a year (its days off and 调休 make-up working days) is known
only once the State Council publishes it and the `holidays` package, or the site's own
`calendar:` in site.yaml, carries it. A rule that needs an unknown year fails closed: it
fires nothing and reports an error on every tick (crmd.calendar.workcal, P32). That is right on the
day, but too late to act on, so `crmd check`, `crmd status` and the daemon (once a day)
warn AHEAD of time, naming the rules, the year and what to do.

A rule's need is found by probing, not by reading its YAML: the calendar questions a tick
asks when it evaluates the rule over (now, T] (its trigger's next fires, the events and
stored dates whose fires could fall there, the due times and `set` dates of those fires)
are asked here the same way, for T up to now + AHEAD; the first T at which one of them
meets an unknown year is where the rule would start to fail.

`crmd plan` uses the same search (`first_failure`) on the engine itself: a rule that stops
at an unknown year lists its fires up to there, and the plan says where and why it stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import partial
from typing import TypeVar

from crmd.calendar.schedules import occurrences
from crmd.engine.candidates import date_span
from crmd.engine.triggers import due_time, event_fire_time, event_span
from crmd.errors import CalendarNotPublished
from crmd.rules.rule import (
    AnnualTrigger,
    DateTrigger,
    EventTrigger,
    Rule,
    ScheduleTrigger,
    SetDateAction,
    TaskAction,
)
from crmd.site import Site

logger = logging.getLogger(__name__)

AHEAD = timedelta(days=60)
"""How far ahead the calendar's end is looked for (issue 14: warn from 60 days before)."""

_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)
# An event's fire time depends on its local day (day-based offsets) and time of day
# (alignment, hour offsets): the first and last moment of each day stand for the day.
_PROBE_TIMES = (time(0, 0), time(23, 59, 59))

E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True)
class CalendarNeed:
    """A rule that needs a calendar year the site does not know, from `at` on."""

    rule_id: str
    year: int
    at: datetime  # the first tick time at which evaluating the rule needs `year`


@dataclass(frozen=True)
class Stop:
    """Where `crmd plan` stopped evaluating a rule, and why: its fires before `at` are
    listed; from `at` on it needs a calendar year not known (`reason`)."""

    at: datetime
    year: int
    reason: str


def first_failure(
    start: datetime, end: datetime, attempt: Callable[[datetime], E | None], failed: E
) -> tuple[datetime, E]:
    """The first whole minute in (start, end] at which `attempt` fails, and its error.

    `attempt(t)` tries the work up to `t` and returns the error it met, or None; it is known
    to fail at `end` (with `failed`), and assumed to fail at every time after one it fails
    at (the work up to a later time asks all that the work up to an earlier one asks).
    A binary search on minutes from `start`: about 16 attempts for a month, 19 for a year.
    """
    base = start.astimezone(UTC).replace(second=0, microsecond=0)
    steps = -(-(end - base) // _MINUTE)  # ceiling: end itself is the last step

    def at(step: int) -> datetime:
        return min(base + step * _MINUTE, end)

    good, bad, error = 0, steps, failed
    while bad - good > 1:
        middle = (good + bad) // 2
        found = attempt(at(middle))
        if found is None:
            good = middle
        else:
            bad, error = middle, found
    return at(bad), error


def calendar_needs(
    rules: Iterable[Rule], site: Site, now: datetime, ahead: timedelta = AHEAD
) -> list[CalendarNeed]:
    """The enabled rules that need an unknown calendar year by `now + ahead`, soonest first."""
    end = now + ahead
    needs = []
    for rule in rules:
        if not rule.enabled:
            continue
        asks = _calendar_questions(rule, site, now)
        failed = _asked(asks, end)
        if failed is None:
            continue
        already = _asked(asks, now)  # failing already (a window behind now needs it)
        if already is not None:
            needs.append(CalendarNeed(rule.id, already.year, now))
            continue
        at, error = first_failure(now, end, partial(_asked, asks), failed)
        needs.append(CalendarNeed(rule.id, error.year, at))
    return sorted(needs, key=lambda n: (n.at, n.rule_id))


def calendar_warnings(needs: Sequence[CalendarNeed], site: Site, now: datetime) -> list[str]:
    """One warning per unknown year: the rules that need it and from when, and what to do."""
    tz, known = site.timezone, site.calendar.last_published
    lines = []
    for year in sorted({n.year for n in needs}):
        rules = [n for n in needs if n.year == year]
        listed = ", ".join(
            f"{n.rule_id} ({'now' if n.at <= now else f'{n.at.astimezone(tz):%Y-%m-%d %H:%M}'})"
            for n in rules
        )
        lines.append(
            f"China's official working-day calendar for {year} is not known here (known "
            f"through {known}), and {len(rules)} rule{'s' if len(rules) != 1 else ''} "
            f"need{'' if len(rules) != 1 else 's'} it within {AHEAD.days} days, from the "
            f"time shown on: {listed}. From then each fails on every tick and fires nothing "
            f"until the year is known. Upgrade the 'holidays' package to a release that knows "
            f"{year}, or list {year}'s days off and make-up working days under 'calendar:' in "
            f"site.yaml with published_through: {year} (docs/sites.md, *The working calendar*)."
        )
    return lines


def site_year_warnings(site: Site) -> list[str]:
    """Years the site's published_through takes beyond the holidays package without listing
    a single day of them: only their statutory holidays would count, no 调休 at all, which
    no year of the official calendar has had."""
    cal = site.calendar
    bare = [
        year
        for year in range(cal.library_last + 1, cal.last_published + 1)
        if year not in cal.site_years
    ]
    return [
        f"calendar: published_through is {cal.last_published}, but site.yaml lists no day off "
        f"or working day of {year}, so {year} counts only its statutory holidays; list the "
        f"days off and make-up working days of the State Council's notice (docs/sites.md, "
        f"*The working calendar*)"
        for year in bare
    ]


class DailyCalendarCheck:
    """The daemon's look ahead: logs calendar_warnings once a site-local day, not every tick."""

    def __init__(self) -> None:
        self.checked_on: date | None = None

    def forget(self) -> None:
        """Look again at the next tick (the rules or the calendar were reloaded)."""
        self.checked_on = None

    def maybe_warn(self, rules: Iterable[Rule], site: Site, now: datetime) -> list[str]:
        """Log and return the warnings if this day has not been looked at yet."""
        today = now.astimezone(site.timezone).date()
        if today == self.checked_on:
            return []
        self.checked_on = today
        warnings = calendar_warnings(calendar_needs(rules, site, now), site, now)
        for warning in warnings:
            logger.warning("%s", warning)
        return warnings


# ------------------------------------------------------------ probing one rule

Questions = Callable[[datetime], Iterable[Callable[[], object]]]


def _asked(questions: Questions, upto: datetime) -> CalendarNotPublished | None:
    """Ask every calendar question of the window up to `upto`; the first refusal, or None."""
    try:
        for ask in questions(upto):
            ask()
    except CalendarNotPublished as exc:
        return exc
    return None


def _calendar_questions(rule: Rule, site: Site, start: datetime) -> Questions:
    """What evaluating `rule` over (start, upto] asks the calendar, as a function of upto:
    each question a call that raises CalendarNotPublished for a year not known."""
    tz, cal = site.timezone, site.calendar
    trigger = rule.trigger

    def actions(fire_at: datetime) -> Callable[[], object]:
        return lambda: _action_dates(rule, fire_at, site)

    if isinstance(trigger, ScheduleTrigger):
        schedule = trigger.schedule

        def schedule_questions(upto: datetime) -> Iterable[Callable[[], object]]:
            # Walking the occurrences is itself the trigger's question (it raises).
            for fire in occurrences(schedule, start, upto):
                yield actions(fire)

        return schedule_questions

    if isinstance(trigger, EventTrigger):
        low, high = event_span(trigger)
        fire_times: dict[datetime, datetime | CalendarNotPublished] = {}

        def fire_of(event_at: datetime) -> datetime:
            found = fire_times.get(event_at)
            if found is None:
                try:
                    found = event_fire_time(trigger, event_at, tz, cal)
                except CalendarNotPublished as exc:
                    found = exc
                fire_times[event_at] = found
            if isinstance(found, CalendarNotPublished):
                raise found
            return found

        def event_questions(upto: datetime) -> Iterable[Callable[[], object]]:
            # A tick up to `upto` works out the fire time of every event up to upto - low
            # (crmd.engine.event_rules, phase 2), and runs the actions of those due by `upto`.
            for event_at in _probe_instants(start - high, upto - low, site):
                fire = fire_of(event_at)  # the trigger's own question (it raises)
                if start < fire <= upto:
                    yield actions(fire)

        return event_questions

    if isinstance(trigger, DateTrigger):
        offset = trigger.before or trigger.after

        def date_questions(upto: datetime) -> Iterable[Callable[[], object]]:
            first, last = date_span(trigger, tz, start, upto)
            for value in _days(first, last):
                day = value
                if offset is not None:
                    day = offset.move_date(value, cal, backwards=trigger.before is not None)
                fire = datetime.combine(day, trigger.at, tz).astimezone(UTC)
                if start < fire <= upto:
                    yield actions(fire)

        return date_questions

    annual: AnnualTrigger = trigger

    def annual_questions(upto: datetime) -> Iterable[Callable[[], object]]:
        first, last = start.astimezone(tz).date(), upto.astimezone(tz).date()
        for day in _days(first, last):
            fire = datetime.combine(day, annual.at, tz).astimezone(UTC)
            if start < fire <= upto:
                yield actions(fire)

    return annual_questions


def _action_dates(rule: Rule, fire_at: datetime, site: Site) -> None:
    """Work out what a fire's actions ask the calendar: due times and `set` dates."""
    tz, cal = site.timezone, site.calendar
    for action in rule.actions:
        if isinstance(action, TaskAction):
            due_time(action.due, fire_at, tz, cal)
        elif isinstance(action, SetDateAction):
            action.after.move_date(fire_at.astimezone(tz).date(), cal)


def _days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += _DAY


def _probe_instants(after: datetime, upto: datetime, site: Site) -> Iterable[datetime]:
    """Event times in (after, upto] standing for every local day there (see _PROBE_TIMES)."""
    tz = site.timezone
    for day in _days(after.astimezone(tz).date(), upto.astimezone(tz).date()):
        for at in _PROBE_TIMES:
            instant = datetime.combine(day, at, tz).astimezone(UTC)
            if after < instant <= upto:
                yield instant
