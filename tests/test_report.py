"""A tick's report stays bounded: counts of every fire, a sample of records, a stream of all."""

from __future__ import annotations

import gc
from collections.abc import Callable
from datetime import UTC, datetime

from crmd.intake import NewEvent, record_events, upsert_customers
from crmd.report import SAMPLE_SIZE, FireRecord
from crmd.store import Unit
from crmd.tables import tasks
from crmd.testing import Harness

MakeSite = Callable[[str], Harness]

# One task per delivery, three days later.
CALLBACK = (
    "rules: [{id: sales-callback, when: {event: sale.delivered, after: 3 days, at: '09:00'},"
    " do: [{task: {role: sales_callback, title: '回访 {{ customer.name }}'}}]}]"
)


def test_a_big_tick_keeps_a_bounded_sample_and_counts_every_fire(make_site: MakeSite) -> None:
    h = make_site(CALLBACK)
    h.tick("2026-11-01 08:00")
    n, now = SAMPLE_SIZE + 300, datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    with h.store.write() as conn:
        upsert_customers(conn, [{"id": f"C{i}", "name": f"客户{i}"} for i in range(n)], now)
        delivered = h.local("2026-11-02 15:00")
        new = [NewEvent("sale.delivered", delivered, f"C{i}", id=f"d{i}") for i in range(n)]
        record_events(conn, new, h.site.event_types, now)
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
