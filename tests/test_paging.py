"""Pages of fires are sized by how long earlier pages took (crmd.engine.paging)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from due_callbacks import MakeSite, delivered_site, record_reads
from sqlalchemy import event

from crmd.engine.paging import FIRST_PAGE, GROWTH, LEAST_PAGE, PAGE_SECONDS, PageSizer
from crmd.intake.records import upsert_customers
from crmd.store import ledger
from crmd.store import queries as q
from crmd.store.database import Stopped, Unit
from crmd.store.tables import fires, tasks
from crmd.testing import Harness


class SteppingClock:
    """A monotonic clock that moves `step` seconds each time it is read: every page
    (read at its start and at its end) then lasts exactly `step`."""

    def __init__(self, step: float) -> None:
        self.step = step
        self.now = 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_rule_starts_with_the_first_page_size_capped_by_the_engines_page_size() -> None:
    sizer = PageSizer()
    assert sizer.size("r", 10_000) == FIRST_PAGE
    assert sizer.size("r", 7) == 7


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (PAGE_SECONDS - 0.001, FIRST_PAGE + 1),  # just in time: room for one more row
        (PAGE_SECONDS, FIRST_PAGE),  # exactly in time: the same again
        (PAGE_SECONDS + 0.001, FIRST_PAGE - 1),  # just too long: one row fewer
        (PAGE_SECONDS / 100, FIRST_PAGE * GROWTH),  # much room: at most GROWTH times more
        (PAGE_SECONDS * 4, FIRST_PAGE // 4),  # four times too long: a quarter of the rows
    ],
)
def test_a_full_page_grows_in_time_and_shrinks_in_proportion_when_too_long(
    seconds: float, expected: int
) -> None:
    sizer = PageSizer()
    sizer.observe("r", FIRST_PAGE, FIRST_PAGE, seconds, 100_000)
    assert sizer.size("r", 100_000) == expected


def test_growth_is_bounded_by_the_pace_by_growth_and_by_the_engines_page_size() -> None:
    sizer = PageSizer()
    sizer.observe("pace", 1000, 1000, PAGE_SECONDS / 2, 100_000)  # room for twice as many
    sizer.observe("growth", 1000, 1000, PAGE_SECONDS / 100, 100_000)
    sizer.observe("most", 1000, 1000, PAGE_SECONDS / 100, 2_500)
    assert sizer.size("pace", 100_000) == 2000
    assert sizer.size("growth", 100_000) == 1000 * GROWTH
    assert sizer.size("most", 2_500) == 2_500


def test_a_partial_or_empty_page_that_was_quick_changes_nothing() -> None:
    sizer = PageSizer()
    sizer.observe("r", 1000, 10, PAGE_SECONDS / 100, 100_000)  # the last rows of a window
    sizer.observe("r", 1000, 0, 50.0, 100_000)  # nothing read: nothing learnt
    assert sizer.size("r", 100_000) == FIRST_PAGE


def test_a_slow_page_never_shrinks_the_next_below_the_least_size_nor_other_rules() -> None:
    sizer = PageSizer()
    sizer.observe("slow", 1000, 1000, 3600.0, 100_000)
    assert sizer.size("slow", 100_000) == LEAST_PAGE
    assert sizer.size("other", 100_000) == FIRST_PAGE
    sizer.observe("tiny", 5, 5, 3600.0, 5)  # an engine page size under the least is kept
    assert sizer.size("tiny", 5) == 5


def _page_limits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The `limit` of every page of due events the engine reads, in order."""
    return record_reads(monkeypatch, "events_between", lambda args, _rows: args[-1])


@pytest.mark.parametrize(
    ("step", "page_size", "expected"),
    [
        # Each page lasts 4 s: the second takes a quarter of the first's rows.
        (PAGE_SECONDS * 4, 10_000, [FIRST_PAGE, FIRST_PAGE // 4]),
        # Each page lasts a tenth of the limit: the next grows, up to the engine's size.
        (PAGE_SECONDS / 10, 3_000, [FIRST_PAGE, 3_000]),
    ],
)
def test_a_catch_up_sizes_its_pages_by_how_long_the_earlier_ones_took(
    make_site: MakeSite,
    monkeypatch: pytest.MonkeyPatch,
    step: float,
    page_size: int,
    expected: list[int],
) -> None:
    n = FIRST_PAGE + 200
    h = delivered_site(make_site, n)
    h.engine.page_size = page_size
    h.engine.pages = PageSizer(clock=SteppingClock(step))
    limits = _page_limits(monkeypatch)
    report = h.tick("2026-11-05 09:00")
    assert limits == expected
    assert report.count("fired") == n
    assert h.count(fires) == h.count(tasks) == n


def test_a_slow_rule_commits_in_small_pages_and_still_fires_everything_once(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = FIRST_PAGE + 2 * LEAST_PAGE + 10
    h = delivered_site(make_site, n)
    h.engine.pages = PageSizer(clock=SteppingClock(3600.0))  # every page an hour long
    limits = _page_limits(monkeypatch)
    report = h.tick("2026-11-05 09:00")
    assert limits == [FIRST_PAGE, LEAST_PAGE, LEAST_PAGE, LEAST_PAGE]
    assert report.count("fired") == h.count(tasks) == n
    with h.store.read() as conn:
        assert ledger.existing_fire_keys(
            conn, [f"sales-callback|event:d{i}" for i in range(n)]
        ) == {f"sales-callback|event:d{i}" for i in range(n)}


GREETING = (
    "rules: [{id: greeting, when: {monthly: 3, at: '09:00', for_each: customer},"
    " do: [{task: {role: cr_specialist, title: '问候 {{ customer.name }}'}}]}]"
)


def _greeting_site(make_site: MakeSite, n: int) -> Harness:
    """A site of n customers and a rule greeting each of them on the 3rd at 09:00."""
    h = make_site(GREETING)
    h.tick("2026-11-01 08:00")
    with h.store.write() as conn:
        people = [{"id": f"C{i:04d}", "name": f"客户{i}"} for i in range(n)]
        upsert_customers(conn, people, datetime(2026, 11, 1, tzinfo=UTC))
    return h


def _part_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many customers each part of a fan-out read."""
    return record_reads(monkeypatch, "customers_page", lambda _args, people: len(people))


def test_a_greeting_to_every_customer_is_written_a_page_of_customers_at_a_time(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _greeting_site(make_site, 250)
    commits = 0

    def counted(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    event.listen(h.store.engine, "commit", counted)
    try:
        # November: one page holds every customer.
        report = h.tick("2026-11-03 09:00")
        whole_page = commits
        assert report.count("fired") == h.count(tasks) == 250
        # December, pages of 40: each part of the greeting is a transaction of its own.
        h.tick("2026-12-03 08:59")  # November's greetings fall overdue first, by then
        h.engine.page_size = 40
        parts = _part_sizes(monkeypatch)
        commits = 0
        report = h.tick("2026-12-03 09:00")
    finally:
        event.remove(h.store.engine, "commit", counted)
    assert parts == [40] * 6 + [10]
    assert commits - whole_page == 6  # seven transactions where there was one
    assert report.count("fired") == 250
    assert h.count(fires) == h.count(tasks) == 500
    assert h.tick("2026-12-03 09:30").count() == 0  # and never again


def test_a_greeting_cut_off_between_parts_is_finished_once_by_the_next_tick(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _greeting_site(make_site, 250)
    h.engine.page_size = 40
    write = h.engine.writer.write
    calls = 0

    def failing_third(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise OSError("the machine lost power")  # as a crash mid-page would
        return write(*args, **kwargs)

    monkeypatch.setattr(h.engine.writer, "write", failing_third)
    with pytest.raises(OSError, match="lost power"):
        h.tick("2026-11-03 09:00")
    assert h.count(fires) == h.count(tasks) == 80  # the two parts committed before it
    report = h.tick("2026-11-03 09:05")  # the rule's watermark stayed before the greeting
    assert report.count("fired") == 170
    assert h.count(fires) == h.count(tasks) == 250
    greeted = [t.customer_id for t in h.tasks("greeting")]
    assert sorted(greeted) == [f"C{i:04d}" for i in range(250)]  # each once


def test_a_plan_of_a_greeting_in_parts_writes_nothing(make_site: MakeSite) -> None:
    h = _greeting_site(make_site, 250)
    h.engine.page_size = 40
    with Unit(h.store, dry_run=True) as unit:
        report = h.engine.tick(unit, h.local("2026-11-03 09:00"))
    assert report.count("fired") == 250
    assert h.count(fires) == h.count(tasks) == 0


def test_an_alert_for_every_customer_and_a_late_one_are_written_in_parts_once(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = (
        "rules: [{id: alert, when: {event: weather.alert, for_each: customer},"
        " do: [{task: {role: cr_specialist, title: '提醒 {{ customer.name }}'}}]}]"
    )
    h = make_site(rules)
    h.tick("2026-11-01 08:00")
    with h.store.write() as conn:
        people = [{"id": f"C{i:04d}", "name": f"客户{i}"} for i in range(90)]
        upsert_customers(conn, people, datetime(2026, 11, 1, tzinfo=UTC))
    h.engine.page_size = 40
    parts = _part_sizes(monkeypatch)
    h.event("weather.alert", "2026-11-03 08:00", event_id="storm")
    assert h.tick("2026-11-03 08:01").count("fired") == 90  # due now: phase 2
    h.event("weather.alert", "2026-11-03 07:00", event_id="fog")  # arrives after the tick
    assert h.tick("2026-11-03 08:02").count("fired") == 90  # a late arrival: phase 1
    assert parts == [40, 40, 10, 40, 40, 10]
    assert h.count(tasks) == 180
    assert h.tick("2026-11-03 09:00").count() == 0


VISITS = (
    "rules:\n"
    "  - {id: visit, when: {date: customer.next_visit, at: '10:00'},"
    " do: [{task: {role: cr_specialist, title: '回访 {{ customer.name }}'}}]}\n"
    "  - {id: plan-visit, when: {event: service.completed},"
    " do: [{set: {field: customer.next_visit, after: 7 days}}]}\n"
)


def _visits_site(make_site: MakeSite, visits: list[date]) -> Harness:
    """A site whose customer C{i:02d} is due for a visit on visits[i], at 10:00."""
    h = make_site(VISITS)
    h.tick("2026-11-01 08:00")
    now = datetime(2026, 11, 1, tzinfo=UTC)
    with h.store.write() as conn:
        people = [{"id": f"C{i:02d}", "name": f"客户{i}"} for i in range(len(visits))]
        upsert_customers(conn, people, now)
        for i, day in enumerate(visits):
            q.set_date(conn, "customer", f"C{i:02d}", "next_visit", day, f"C{i:02d}", now, "t")
    return h


def test_stored_dates_are_read_a_page_at_a_time_and_fire_in_time_order(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three customers a day from 12 November back to 3 November, stored in that order.
    h = _visits_site(make_site, [date(2026, 11, 12) - timedelta(days=i // 3) for i in range(30)])
    h.engine.page_size = 10
    reads = record_reads(monkeypatch, "dates_between", lambda args, rows: (args[-1], len(rows)))
    report = h.tick("2026-11-12 10:00")
    # The first round reads the window a page at a time; a second (after the rule's task
    # events) looks at the last days again, and finds nothing new to fire.
    assert reads[:4] == [(10, 10), (10, 10), (10, 10), (10, 0)]
    assert all(limit == 10 and n <= 10 for limit, n in reads)
    assert report.count("fired") == 30
    made = [(t.available_at, t.customer_id) for t in h.tasks("visit")]
    assert [at for at, _ in made] == sorted(at for at, _ in made)  # by time, across pages
    assert {c for _, c in made} == {f"C{i:02d}" for i in range(30)}


def test_fires_sharing_a_time_across_pages_survive_a_stop_between_the_pages(
    make_site: MakeSite,
) -> None:
    """Thirty customers with the same date fire at the same instant, ten per page; the
    daemon is stopped after the first page. The next tick fires the other twenty."""
    h = _visits_site(make_site, [date(2026, 11, 10)] * 30)
    h.engine.page_size = 10
    batches = 0

    def stop_after_the_first_page() -> bool:
        nonlocal batches
        batches += 1
        return bool(h.count(tasks))  # asked before each transaction: stop once one committed

    with pytest.raises(Stopped), Unit(h.store, should_stop=stop_after_the_first_page) as unit:
        h.engine.tick(unit, h.local("2026-11-10 10:00"))
    assert h.count(tasks) == 10
    assert h.tick("2026-11-10 10:01").count("fired") == 20
    assert sorted(t.customer_id for t in h.tasks("visit")) == [f"C{i:02d}" for i in range(30)]


def test_a_days_birthdays_come_a_page_at_a_time_and_survive_a_stop_between_pages(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make_site(
        "rules: [{id: birthday, when: {annually: customer.birthday, at: '09:00'},"
        " do: [{task: {role: member_specialist, title: '生日 {{ customer.name }}'}}]}]"
    )
    h.tick("2026-11-01 08:00")
    people = [
        {"id": f"C{i:02d}", "name": f"客户{i}", "birthday": date(1970 + i, 11, 5)}
        for i in range(25)
    ]
    with h.store.write() as conn:
        upsert_customers(conn, people, datetime(2026, 11, 1, tzinfo=UTC))
    h.engine.page_size = 10
    reads = record_reads(
        monkeypatch, "customers_with_birthday", lambda args, rows: (args[-1], len(rows))
    )

    def stop_once_a_page_committed() -> bool:
        return bool(h.count(tasks))

    with pytest.raises(Stopped), Unit(h.store, should_stop=stop_once_a_page_committed) as unit:
        h.engine.tick(unit, h.local("2026-11-05 09:00"))
    # 1 to 4 November: nobody; the 5th: a page of ten, committed, then the stop.
    assert [n for _, n in reads] == [0, 0, 0, 0, 10]
    assert h.count(tasks) == 10
    assert h.tick("2026-11-05 09:01").count("fired") == 15
    assert sorted(t.customer_id for t in h.tasks("birthday")) == [p["id"] for p in people]
    assert all(limit == 10 and n <= 10 for limit, n in reads)
