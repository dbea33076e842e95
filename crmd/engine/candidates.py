"""What the rules call for, before the ledger is asked: candidates for fires, per trigger.

An event trigger's candidates come from pages of events (crmd.engine.event_rules reads them); a
calendar schedule's from its occurrences, an annual day's from the customers whose day it
is, a date trigger's from the dates stored on customers and vehicles. Each candidate
carries the key that makes its fire happen once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row

from crmd.calendar.schedules import occurrence_key, occurrences
from crmd.engine.triggers import month_days_on
from crmd.rules.rule import AnnualTrigger, DateTrigger, Rule, ScheduleTrigger
from crmd.site import Site
from crmd.store import queries as q
from crmd.store.database import Unit


@dataclass
class Candidate:
    """A fire the rules call for, before the ledger has been asked whether it happened."""

    rule: Rule
    key: str
    fire_at: datetime
    subject: str
    customer_id: str | None = None
    vehicle_id: str | None = None
    event: Row[Any] | None = None
    conditions_checked: bool = False


def event_candidate(rule: Rule, row: Row[Any], fire_at: datetime) -> Candidate:
    subject = f"customer:{row.customer_id}" if row.customer_id else "site"
    return Candidate(
        rule,
        f"{rule.id}|event:{row.id}",
        fire_at,
        subject,
        customer_id=row.customer_id,
        vehicle_id=row.vehicle_id,
        event=row,
    )


def schedule_pages(
    rule: Rule,
    trigger: ScheduleTrigger,
    tz: ZoneInfo,
    watermark: datetime,
    now: datetime,
    page_rows: Callable[[], int],
) -> Iterator[list[Candidate]]:
    """A calendar schedule's occurrences in (watermark, now], in pages of `page_rows()`."""
    page: list[Candidate] = []
    for at in occurrences(trigger.schedule, watermark, now):
        local = at.astimezone(tz)
        key = f"{rule.id}|{occurrence_key(trigger.schedule, local)}"
        page.append(Candidate(rule, key, at.astimezone(UTC), "site"))
        if len(page) >= page_rows():
            yield page
            page = []
    if page:
        yield page


def annual_pages(
    unit: Unit,
    rule: Rule,
    trigger: AnnualTrigger,
    tz: ZoneInfo,
    watermark: datetime,
    now: datetime,
    page_rows: Callable[[], int],
) -> Iterator[list[Candidate]]:
    """The customers whose day (a birthday) falls in (watermark, now], day by day, each
    day's customers in pages of `page_rows()` by id."""
    day = watermark.astimezone(tz).date()
    last = now.astimezone(tz).date()
    while day <= last:
        fire_local = datetime.combine(day, trigger.at, tz)
        fire_at = fire_local.astimezone(UTC)
        after = ""
        while watermark < fire_at <= now:
            size = page_rows()
            with unit.batch() as conn:
                people = q.customers_with_birthday(conn, month_days_on(day, trigger), after, size)
            if people:
                yield [
                    Candidate(
                        rule,
                        f"{rule.id}|customer:{c.id}|{day.year}",
                        fire_at,
                        f"customer:{c.id}",
                        customer_id=c.id,
                    )
                    for c in people
                ]
            if len(people) < size:
                break
            after = people[-1].id
        day += timedelta(days=1)


def date_pages(
    unit: Unit,
    rule: Rule,
    trigger: DateTrigger,
    site: Site,
    watermark: datetime,
    now: datetime,
    page_rows: Callable[[], int],
) -> Iterator[list[Candidate]]:
    """Fires relative to stored dates whose time lies in (watermark, now], in time order.

    The dates are read a page at a time, by value: a fire's day moves with its date (an
    offset, even in working days, keeps their order), so pages by value are pages by fire
    time, and a year's plan of a large store holds one page of dates, not all of them.
    """
    tz, cal = site.timezone, site.calendar
    offset = trigger.before or trigger.after
    span = date_span(trigger, tz, watermark, now)
    cursor: tuple[date, str] | None = None
    while True:
        size = page_rows()
        with unit.batch() as conn:
            rows = q.dates_between(conn, trigger.scope, trigger.name, *span, cursor, size)
        page = []
        for row in rows:
            day = row.value
            if offset is not None:
                day = offset.move_date(day, cal, backwards=trigger.before is not None)
            fire_at = datetime.combine(day, trigger.at, tz).astimezone(UTC)
            if watermark < fire_at <= now:
                page.append(
                    Candidate(
                        rule,
                        f"{rule.id}|{trigger.scope}:{row.subject_id}|{row.value.isoformat()}",
                        fire_at,
                        f"customer:{row.customer_id}" if row.customer_id else "site",
                        customer_id=row.customer_id,
                        vehicle_id=row.subject_id if trigger.scope == "vehicle" else None,
                    )
                )
        if page:
            yield page
        if len(rows) < size:
            return
        cursor = (rows[-1].value, rows[-1].subject_id)


def date_span(
    trigger: DateTrigger, tz: ZoneInfo, watermark: datetime, now: datetime
) -> tuple[date, date]:
    """The stored dates (first, last, inclusive) whose fires may lie in (watermark, now]."""
    offset = trigger.before or trigger.after
    low, high = offset.bounds() if offset is not None else (timedelta(0), timedelta(0))
    first, last = watermark.astimezone(tz).date(), now.astimezone(tz).date()
    one = timedelta(days=1)
    if trigger.before is not None:  # value = fire day + offset
        return first + low - one, last + high + one
    return first - high - one, last - low + one  # value = fire day - offset


def fan_out(candidates: Sequence[Candidate], people: Sequence[Row[Any]]) -> list[Candidate]:
    """One candidate per customer for each site-wide fire (the rule's `where` then picks)."""
    return [
        Candidate(
            c.rule,
            f"{c.key}|customer:{person.id}",
            c.fire_at,
            f"customer:{person.id}",
            customer_id=person.id,
            event=c.event,
        )
        for person in people
        for c in candidates
    ]
