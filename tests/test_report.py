"""A tick's report stays bounded: counts of every fire, a sample of records, a stream of all."""

from __future__ import annotations

import gc

import pytest
from due_callbacks import CALLBACK, MakeSite, delivered_site, record_reads
from sqlalchemy import func, select

from crmd.engine.report import SAMPLE_SIZE, FireRecord
from crmd.store.database import Unit
from crmd.store.tables import events, tasks


def test_a_big_tick_keeps_a_bounded_sample_and_counts_every_fire(make_site: MakeSite) -> None:
    n = SAMPLE_SIZE + 300
    h = delivered_site(make_site, n)
    h.engine.page_size = 400  # several pages, each its own transaction
    streamed: set[str] = set()
    with Unit(h.store) as unit:
        report = h.engine.tick(
            unit, h.local("2026-11-05 09:00"), on_fire=lambda f: streamed.add(f.key)
        )
    gc.collect()
    alive = sum(1 for o in gc.get_objects() if isinstance(o, FireRecord))
    assert len(report.fires) == SAMPLE_SIZE
    assert alive <= SAMPLE_SIZE  # nothing else holds the other 300 records
    assert report.count() == report.count("fired") == n
    assert report.left_out == 300
    assert len(streamed) == n  # every fire went to the stream, once
    tally = report.rules["sales-callback"]
    assert tally.first == tally.last == h.local("2026-11-05 09:00")
    assert tally.does == {"task sales_callback": n}
    assert h.count(tasks) == n


def test_a_tally_counts_each_status_and_only_fired_actions(make_site: MakeSite) -> None:
    h = make_site(CALLBACK)
    h.tick("2026-11-01 08:00")
    h.customer("C1", name="张三")
    h.event("sale.delivered", "2026-11-02 15:00", "C1")
    report = h.tick("2026-11-09 09:00")  # four days late
    (fire,) = report.fires
    assert (fire.status, fire.late) == ("fired", True)
    assert report.late_fired == 1
    failed = FireRecord("x", "k", "site", fire.fire_at, "failed", False, None, None, reason="r")
    report.add(failed)
    assert report.rules["x"].statuses == {"failed": 1}
    assert report.rules["x"].does == {}
    assert (report.count(), report.count("fired"), report.count("failed")) == (2, 1, 1)


def test_tasks_falling_overdue_are_marked_a_page_at_a_time_and_counted(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = SAMPLE_SIZE + 300
    h = delivered_site(make_site, n)
    h.tick("2026-11-05 09:00")  # the callbacks, due a day later
    h.engine.page_size = 400
    pages = record_reads(monkeypatch, "tasks_falling_overdue", lambda _args, rows: len(rows))
    report = h.tick("2026-11-06 09:00")
    assert report.overdue_count == n
    assert len(report.overdue) == SAMPLE_SIZE
    assert max(pages) <= 400  # no read held more than a page of tasks
    assert sum(pages) == n
    with h.store.read() as conn:
        marked = conn.execute(select(func.count()).where(tasks.c.overdue)).scalar_one()
        events_written = conn.execute(
            select(func.count()).where(events.c.type == "task.overdue")
        ).scalar_one()
    assert marked == events_written == n  # each task once, with its event
    assert report.overdue == list(range(1, SAMPLE_SIZE + 1))  # the first, by due time and id
    again = h.tick("2026-11-06 09:01")
    assert (again.overdue_count, again.overdue) == (0, [])
