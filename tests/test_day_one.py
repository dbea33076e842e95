"""Day one: a new site loads its history, and the first tick does what is still of use.

The shipped rules (P1-P3, P12) on a store filled before crmd's first tick, and history
keyed in after a rule came into force (crmd/engine/takeover.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from crmd.engine.takeover import reach
from crmd.store.database import Unit
from crmd.store.tables import dates
from crmd.testing import Harness

REPO = Path(__file__).resolve().parent.parent
MakeShipped = Callable[..., Harness]
MakeSite = Callable[[str], Harness]


def _history(h: Harness) -> None:
    """Two buyers whose cars were delivered on 03-02 at 10:00 and 15:00 (imported before
    crmd's first tick)."""
    for n, hour in ((1, "10:00"), (2, "15:00")):
        h.customer(f"C{n}", name=f"客户{n}", phone=f"1380013800{n}")
        h.vehicle(f"V{n}", f"C{n}", model="朗逸", plate=f"粤A0000{n}")
        h.event("sale.delivered", f"2026-03-02 {hour}", f"C{n}", f"V{n}", event_id=f"D{n}")


def test_the_first_tick_calls_the_buyers_still_inside_their_window(
    make_shipped: MakeShipped,
) -> None:
    # P1: the README's example. The first tick on 03-05 12:00 finds both deliveries of
    # 03-02: their callback (N+3..N+5) is due from 03-05 00:00 to 03-07 23:59, still open.
    h = make_shipped(("callbacks.yaml",))
    _history(h)
    report = h.tick("2026-03-05 12:00")
    assert report.count("fired") == 4  # two callbacks, two first follow-ups
    tasks = h.tasks("sales-callback")
    assert sorted(t.customer_id for t in tasks) == ["C1", "C2"]
    for t in tasks:
        assert t.due_at == h.local("2026-03-07 23:59")
        assert (
            t.warning == "made 12 hours after its time, which was before this rule came into force"
        )
    assert all(f.late for f in h.fires("sales-callback"))
    # P2's two-hour care call (due 03-02 14:00 and 19:00) closed days before: beyond what
    # the rule could still do, so the first tick leaves it alone.
    assert h.fires("delivery-care-2h") == []
    # The first follow-up (from 03-03, due 03-04 23:59 + 1 day) is still open too.
    assert len(h.tasks("delivery-followup")) == 2


@pytest.mark.parametrize(
    ("first_tick", "made"),
    [("2026-03-07 23:58", True), ("2026-03-07 23:59", False), ("2026-03-08 00:00", False)],
)
def test_a_window_closing_at_the_first_tick_is_not_taken_over(
    make_shipped: MakeShipped, first_tick: str, made: bool
) -> None:
    # The callback of 03-02's delivery is due 03-07 23:59: the minute before, it is made;
    # at that minute and after, the window has closed.
    h = make_shipped(("callbacks.yaml",))
    _history(h)
    h.tick(first_tick)
    assert len(h.tasks("sales-callback")) == (2 if made else 0)
    # A task whose window closed before crmd began is history: not in the ledger either.
    assert len(h.fires("sales-callback")) == (2 if made else 0)


def test_a_rule_added_later_starts_when_first_seen(make_shipped: MakeShipped) -> None:
    # Day one is the store's first tick only: a rule added to a running site does not
    # take over history (unless it asks for a backfill), as documented.
    h = make_shipped(("reminders.yaml",))
    h.tick("2026-03-01 00:00")
    _history(h)
    h.reload(_shipped("callbacks.yaml"))
    h.tick("2026-03-05 12:00")
    assert h.tasks("sales-callback") == []


def test_a_delivery_keyed_in_late_after_the_rule_came_into_force_gets_its_callback(
    make_shipped: MakeShipped,
) -> None:
    # The rule came into force on 03-05 12:00 (the site's first tick, empty store). The
    # delivery of 03-02 is keyed in on 03-06 09:00: its callback fell due before the rule
    # came into force, and its window (to 03-07 23:59) is still open, so it is made, late.
    h = make_shipped(("callbacks.yaml",))
    h.tick("2026-03-05 12:00")
    h.customer("C1", name="张三", phone="13800138001")
    h.vehicle("V1", "C1", model="朗逸")
    h.event(
        "sale.delivered", "2026-03-02 10:00", "C1", "V1", event_id="D1", recorded="2026-03-06 09:00"
    )
    h.tick("2026-03-06 09:00")
    task = h.only_task("sales-callback")
    assert "before this rule came into force" in (task.warning or "")
    # One keyed in on 03-08 for a delivery of 03-06 (fire 03-09 00:00, after the rule came
    # into force): it gets its callback however late, even after its window.
    h.customer("C2", name="李四", phone="13800138002")
    h.event("sale.delivered", "2026-03-06 10:00", "C2", event_id="D2", recorded="2026-03-12 09:00")
    h.tick("2026-03-12 09:00")
    late = [t for t in h.tasks("sales-callback") if t.customer_id == "C2"]
    assert len(late) == 1
    assert late[0].due_at < h.local("2026-03-12 09:00")
    assert "after its time" in (late[0].warning or "")


def test_messages_too_late_on_day_one_are_skipped_and_listed(make_site: MakeSite) -> None:
    h = make_site(
        """
rules:
  - id: birthday-sms
    when: {annually: customer.birthday, at: "09:00"}
    late: {skip_after: 1 day}
    do:
      - sms: {text: "生日快乐 {{ customer.name }}"}
  - id: welcome-sms
    when: {event: member.joined}
    do:
      - sms: {text: "欢迎 {{ customer.name }}"}
"""
    )
    h.customer("A", name="甲", phone="13800138001", birthday=date(1990, 3, 4))  # yesterday
    h.customer("B", name="乙", phone="13800138002", birthday=date(1990, 3, 5))  # today
    h.event("member.joined", "2026-03-03 20:00", "A", event_id="J1")  # 40 hours ago
    h.event("member.joined", "2026-03-05 08:00", "B", event_id="J2")  # 4 hours ago
    h.tick("2026-03-05 12:00")
    sent = sorted((m.rule_id, m.customer_id) for m in h.outbox())
    assert sent == [("birthday-sms", "B"), ("welcome-sms", "B")]
    skipped = {
        (f.rule_id, f.customer_id): f.detail["reason"] for f in h.fires() if f.status == "skipped"
    }
    assert set(skipped) == {("birthday-sms", "A"), ("welcome-sms", "A")}
    assert "the rule skips after 1 day" in skipped[("birthday-sms", "A")]
    assert "messages are sent up to 1 day" in skipped[("welcome-sms", "A")]


def test_next_maintenance_is_computed_from_the_whole_history(make_shipped: MakeShipped) -> None:
    # P12: service visits long before crmd's first tick still set each vehicle's next
    # maintenance (the later visit wins), so its reminders come on time.
    h = make_shipped(("reminders.yaml",))
    h.customer("C1", name="张三", phone="13800138001")
    h.vehicle("V1", "C1", plate="粤A00001")
    h.event("service.completed", "2025-06-01 10:00", "C1", "V1", event_id="S1")
    h.event("service.completed", "2025-09-20 10:00", "C1", "V1", event_id="S2")
    h.tick("2026-03-05 12:00")
    with h.store.read() as conn:
        stored = conn.execute(select(dates.c.value).where(dates.c.subject_id == "V1")).scalar_one()
    assert stored.isoformat() == "2026-03-20"
    h.tick("2026-03-06 10:00")  # two weeks before 03-20
    assert h.only_task("maintenance-reminder").vehicle_id == "V1"


def test_plan_before_the_first_tick_shows_what_it_will_do(make_shipped: MakeShipped) -> None:
    h = make_shipped(("callbacks.yaml", "reminders.yaml"))
    _history(h)
    now = h.local("2026-03-05 12:00")
    with Unit(h.store, dry_run=True) as unit:
        planned = h.engine.tick(unit, now, late_as_of=now)
    assert h.fires() == []  # the plan wrote nothing
    done = h.tick("2026-03-05 12:00")

    def seen(report: object) -> list[tuple[str, str, object, str]]:
        return sorted((f.rule_id, f.subject, f.fire_at, f.status) for f in report.fires)  # type: ignore[attr-defined]

    assert seen(planned) == seen(done)
    assert len(done.fires) > 4


def _shipped(name: str) -> str:
    return (REPO / "rules" / name).read_text(encoding="utf-8")


def test_reach_covers_the_longest_use_of_each_shipped_rule(make_shipped: MakeShipped) -> None:
    rules = make_shipped().engine.ruleset.by_id()
    # P1: fire at N+3 00:00, due two days later at 23:59.
    span = reach(rules["sales-callback"])
    assert span is not None
    assert timedelta(days=2) < span <= timedelta(days=4)
    # A greeting that skips after a day is listed one day beyond that.
    assert reach(rules["birthday-sms"]) == timedelta(days=2)
    # P12's next maintenance is state: all of history.
    assert reach(rules["maintenance-schedule"]) is None
    # P4 counts attempts made from now on.
    assert reach(rules["unreachable-to-sales"]) == timedelta(0)


def test_the_first_tick_counts_what_it_left_as_history(make_shipped: MakeShipped) -> None:
    # The boundary case above: at 03-08 00:00 both callbacks' windows have closed; they are
    # not made, not recorded, but counted.
    h = make_shipped(("callbacks.yaml",))
    _history(h)
    report = h.tick("2026-03-08 00:00")
    assert h.tasks("sales-callback") == []
    assert report.history >= 2


def test_a_failed_fire_taken_over_is_made_once_fixed_even_after_its_window(
    make_shipped: MakeShipped,
) -> None:
    # Taken over on day one while its window was open, it failed (no such customer); the
    # customer arrives after the window closed: it was owed, so it is made, late.
    h = make_shipped(("callbacks.yaml",))
    h.event("sale.delivered", "2026-03-02 10:00", "C9", event_id="D9")
    h.tick("2026-03-05 12:00")
    assert [f.status for f in h.fires("sales-callback")] == ["failed"]
    h.customer("C9", name="王五", phone="13800138009")
    h.tick("2026-03-09 09:00")
    assert [f.status for f in h.fires("sales-callback")] == ["fired"]
    assert h.only_task("sales-callback").customer_id == "C9"


def test_a_plan_into_the_future_of_a_new_store_starts_at_the_real_clock(
    make_shipped: MakeShipped,
) -> None:
    # `crmd plan --to` a week ahead on a store never evaluated: the rules start where the
    # first tick would (the real clock), and the week's fires are all in the plan.
    h = make_shipped(("callbacks.yaml",))
    _history(h)
    real = h.local("2026-03-05 12:00")
    with Unit(h.store, dry_run=True) as unit:
        planned = h.engine.tick(unit, h.local("2026-03-12 12:00"), late_as_of=real)
    seen = {(f.rule_id, f.customer_id) for f in planned.fires if f.status == "fired"}
    # Day 7 care (03-09) falls after the real clock: a first tick on 03-05 makes it later.
    assert ("delivery-care-day7", "C1") in seen
    assert ("sales-callback", "C1") in seen
