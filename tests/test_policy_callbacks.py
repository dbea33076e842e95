"""The shipped callback and complaint rules (rules/callbacks.yaml, DOMAIN.md P1-P10)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row

from crmd.testing import Harness

REPO = Path(__file__).resolve().parent.parent
CALLBACKS = REPO / "rules" / "callbacks.yaml"

MakeShipped = Callable[..., Harness]


def alternative(rule_id: str) -> str:
    """The commented-out alternative rule of callbacks.yaml, uncommented, as a rule file."""
    lines = CALLBACKS.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"  # --- alternative: {rule_id}") + 1
    end = lines.index("  # --- end", start)
    body = [line.replace("  # ", "  ", 1) for line in lines[start:end]]
    return "rules:\n" + "\n".join(body) + "\n"


@pytest.fixture
def h(make_policy_site: MakeShipped) -> Harness:
    return make_policy_site()


def listed(h: Harness, at: str, role: str, rule: str) -> list[Row[Any]]:
    h.tick(at)
    return [t for t in h.listed(at, role) if t.rule_id == rule]


# ---------------------------------------------------------------- P1 sales callback


@pytest.mark.postgres_sample
def test_sales_callback_listed_from_day_3_overdue_after_day_5(h: Harness) -> None:
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")
    assert listed(h, "2026-11-04 23:59", "sales_callback", "sales-callback") == []
    (task,) = listed(h, "2026-11-05 00:00", "sales_callback", "sales-callback")
    assert task.title == "销售回访 张三 朗逸"
    assert task.due_at == h.local("2026-11-07 23:59")
    h.tick("2026-11-07 23:58")
    assert not h.only_task("sales-callback").overdue
    h.tick("2026-11-08 00:00")
    assert h.only_task("sales-callback").overdue


def test_sales_callback_not_for_a_customer_who_opted_out(h: Harness) -> None:
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")
    h.event("customer.opted_out", "2026-11-03 10:00", "C1")
    h.tick("2026-11-06 00:00")
    assert h.tasks("sales-callback") == []


def test_sales_callback_day7_alternative(make_policy_site: MakeShipped) -> None:
    h = make_policy_site(alternative("sales-callback-day7"))
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")
    h.tick("2026-11-08 23:59")
    assert h.tasks("sales-callback-day7") == []
    h.tick("2026-11-09 00:00")
    task = h.only_task("sales-callback-day7")
    assert (task.role, task.due_at) == ("sales_callback", h.local("2026-11-09 23:59"))


# ---------------------------------------------------------------- P2 delivery care


def test_delivery_care_at_2_hours_day_1_and_day_7(h: Harness) -> None:
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")
    h.tick("2026-11-02 16:59")
    assert h.tasks("delivery-care-2h") == []
    h.tick("2026-11-02 17:00")
    care = h.only_task("delivery-care-2h")
    assert (care.role, care.title) == ("sales", "交车2小时关怀 张三 朗逸")
    assert care.due_at == h.local("2026-11-02 19:00")

    h.tick("2026-11-02 23:59")
    assert h.tasks("delivery-followup") == []
    h.tick("2026-11-03 00:00")
    follow = h.only_task("delivery-followup")
    assert follow.due_at == h.local("2026-11-05 23:59")  # within 3 days of delivery

    h.tick("2026-11-08 23:59")
    assert h.tasks("delivery-care-day7") == []
    h.tick("2026-11-09 00:00")
    day7 = h.only_task("delivery-care-day7")
    assert (day7.role, day7.title) == ("sales", "交车7天关怀 张三 朗逸")
    h.tick("2026-11-10 00:00")
    assert h.only_task("delivery-care-day7").overdue


# ---------------------------------------------------------------- P3 service callback


def test_service_callback_listed_from_day_3_overdue_after_day_5(h: Harness) -> None:
    h.event("service.completed", "2026-11-02 11:00", "C1", "V1", data={"kind": "maintenance"})
    assert listed(h, "2026-11-04 23:59", "service_callback", "service-callback") == []
    (task,) = listed(h, "2026-11-05 00:00", "service_callback", "service-callback")
    assert task.title == "售后回访 张三 粤A12345"
    assert task.due_at == h.local("2026-11-07 23:59")
    h.tick("2026-11-08 00:00")
    assert h.only_task("service-callback").overdue


def test_service_callback_across_spring_festival_uses_calendar_days(h: Harness) -> None:
    # The active rule counts calendar days: a holiday does not stretch the window.
    h.event("service.completed", "2026-02-12 16:00", "C1", "V1")
    h.tick("2026-02-15 00:00")
    task = h.only_task("service-callback")
    assert task.due_at == h.local("2026-02-17 23:59")


def test_service_callback_working_days_alternative_before_spring_festival(
    make_policy_site: MakeShipped,
) -> None:
    h = make_policy_site(alternative("service-callback-working-days"))
    # Thursday 12 February 2026; Saturday the 14th is a make-up working day (调休), then
    # 15-23 February are the Spring Festival holiday.
    h.event("service.completed", "2026-02-12 16:00", "C1", "V1")
    h.tick("2026-02-12 23:59")
    assert h.tasks("service-callback-working-days") == []
    h.tick("2026-02-13 00:00")
    task = h.only_task("service-callback-working-days")
    assert task.role == "service_callback"
    assert task.due_at == h.local("2026-02-24 23:59")  # 14th (调休 Saturday), then the 24th
    h.tick("2026-02-24 23:58")
    assert not h.only_task("service-callback-working-days").overdue


@pytest.mark.postgres_sample
def test_service_callback_working_days_alternative_make_up_saturday(
    make_policy_site: MakeShipped,
) -> None:
    h = make_policy_site(alternative("service-callback-working-days"))
    # Friday 27 February 2026: the next working day is Saturday the 28th (调休).
    h.event("service.completed", "2026-02-27 16:00", "C1", "V1")
    h.tick("2026-02-27 23:59")
    assert h.tasks("service-callback-working-days") == []
    h.tick("2026-02-28 00:00")
    task = h.only_task("service-callback-working-days")
    assert task.due_at == h.local("2026-03-03 23:59")  # Mon 2nd, Tue 3rd


# ---------------------------------------------------------------- P4 unreachable


def callback_task(h: Harness) -> Row[Any]:
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")
    h.tick("2026-11-05 09:00")
    return h.only_task("sales-callback")


@pytest.mark.postgres_sample
def test_third_failed_attempt_goes_to_sales(h: Harness) -> None:
    task = callback_task(h)
    h.attempt(task.id, "powered_off", "2026-11-05 09:10")
    h.attempt(task.id, "forwarded", "2026-11-05 14:00")
    h.tick("2026-11-05 14:01")
    assert h.tasks("unreachable-to-sales") == []
    h.attempt(task.id, "unreachable", "2026-11-06 10:00")
    h.tick("2026-11-06 10:00")
    verify = h.only_task("unreachable-to-sales")
    assert verify.role == "sales"
    assert verify.title == "核实客户联系方式 张三"
    assert verify.due_at == h.local("2026-11-09 10:00")
    assert verify.customer_id == "C1"


def test_two_failures_or_a_reached_call_create_nothing(h: Harness) -> None:
    task = callback_task(h)
    h.attempt(task.id, "powered_off", "2026-11-05 09:10")
    h.attempt(task.id, "no_answer", "2026-11-05 11:00")  # not counted
    h.attempt(task.id, "unreachable", "2026-11-05 14:00")
    h.attempt(task.id, "reached", "2026-11-06 10:00", score=9)
    h.tick("2026-11-07 10:00")
    assert h.tasks("unreachable-to-sales") == []


def test_sales_not_verifying_in_time_goes_to_the_cr_manager(h: Harness) -> None:
    task = callback_task(h)
    for at in ("2026-11-05 09:10", "2026-11-05 14:00", "2026-11-06 10:00"):
        h.attempt(task.id, "powered_off", at)
    h.tick("2026-11-06 10:00")
    h.tick("2026-11-09 09:59")
    assert h.tasks("unreachable-verify-overdue") == []
    h.tick("2026-11-09 10:00")
    h.tick("2026-11-09 10:00")
    escalation = h.only_task("unreachable-verify-overdue")
    assert escalation.role == "cr_manager"
    assert escalation.title == "销售部逾期未核实联系方式 张三"


def test_sales_verifying_in_time_is_not_escalated(h: Harness) -> None:
    task = callback_task(h)
    for at in ("2026-11-05 09:10", "2026-11-05 14:00", "2026-11-06 10:00"):
        h.attempt(task.id, "powered_off", at)
    h.tick("2026-11-06 10:00")
    h.done(h.only_task("unreachable-to-sales").id, "2026-11-08 10:00")
    h.tick("2026-11-12 10:00")
    assert h.tasks("unreachable-verify-overdue") == []


# ---------------------------------------------------------------- P6 refusing customers


@pytest.mark.postgres_sample
def test_a_refused_call_is_thanked_by_sms_and_not_pressed(h: Harness) -> None:
    task = callback_task(h)
    h.attempt(task.id, "no_answer", "2026-11-05 09:10")
    h.tick("2026-11-05 09:11")
    assert [m for m in h.outbox() if m.rule_id == "refused-call-sms"] == []
    h.attempt(task.id, "refused", "2026-11-05 10:00")
    h.tick("2026-11-05 10:00")
    (sms,) = [m for m in h.outbox() if m.rule_id == "refused-call-sms"]
    assert sms.customer_id == "C1"
    assert "张三" in sms.body
    assert h.only_task("sales-callback").status == "done"
    h.tick("2026-11-09 00:00")
    assert not h.only_task("sales-callback").overdue


# ---------------------------------------------------------------- P7-P9 complaints


@pytest.mark.postgres_sample
def test_complaint_goes_to_manager_then_department(h: Harness) -> None:
    h.event("complaint.opened", "2026-11-05 10:00", "C1", "V1")
    h.tick("2026-11-05 10:00")
    assign = h.only_task("complaint-to-manager")
    assert (assign.role, assign.due_at) == ("cr_manager", h.local("2026-11-06 10:00"))
    assert h.tasks("complaint-major-to-gm") == []
    h.event("complaint.assigned", "2026-11-05 11:00", "C1", "V1", data={"department": "sales"})
    h.tick("2026-11-05 11:00")
    handle = h.only_task("complaint-handling")
    assert (handle.role, handle.due_at) == ("sales_manager", h.local("2026-11-12 11:00"))
    assert h.only_task("complaint-to-manager").status == "done"


def test_major_complaint_goes_to_the_general_manager(h: Harness) -> None:
    h.event("complaint.opened", "2026-11-05 10:00", "C1", "V1", data={"severity": "major"})
    h.tick("2026-11-05 10:00")
    assert h.only_task("complaint-major-to-gm").role == "gm"
    assert h.tasks("complaint-to-manager") == []


@pytest.mark.parametrize(
    ("department", "role"), [("sales", "sales_callback"), ("service", "service_callback")]
)
def test_resolved_complaint_is_revisited_within_3_days(
    h: Harness, department: str, role: str
) -> None:
    h.event("complaint.resolved", "2026-11-10 15:00", "C1", "V1", data={"department": department})
    h.tick("2026-11-10 14:59")
    assert h.tasks("complaint-revisit") == []
    h.tick("2026-11-10 15:00")
    task = h.only_task("complaint-revisit")
    assert (task.role, task.title) == (role, "投诉回访 张三")
    assert task.due_at == h.local("2026-11-13 15:00")
    h.tick("2026-11-13 15:00")
    assert h.only_task("complaint-revisit").overdue


def test_unsatisfied_revisit_reopens_the_complaint(h: Harness) -> None:
    h.event("complaint.resolved", "2026-11-10 15:00", "C1", "V1", data={"department": "service"})
    h.tick("2026-11-10 15:00")
    task = h.only_task("complaint-revisit")
    h.attempt(task.id, "reached", "2026-11-11 10:00", score=4)
    h.tick("2026-11-11 10:00")
    h.tick("2026-11-11 10:00")
    reopened = h.only_task("complaint-reopened")
    assert reopened.role == "cr_manager"
    assert reopened.title == "投诉重开 张三"
    assert reopened.note == "回访评分 4"


def test_satisfied_revisit_closes_the_matter(h: Harness) -> None:
    h.event("complaint.resolved", "2026-11-10 15:00", "C1", "V1", data={"department": "service"})
    h.tick("2026-11-10 15:00")
    h.attempt(h.only_task("complaint-revisit").id, "reached", "2026-11-11 10:00", score=9)
    h.tick("2026-11-11 10:00")
    h.tick("2026-11-12 10:00")
    assert h.tasks("complaint-reopened") == []


# ---------------------------------------------------------------- P10 summaries


@pytest.mark.postgres_sample
def test_weekly_and_daily_complaint_summaries(h: Harness) -> None:
    h.tick("2026-11-23 08:59")  # Monday
    weekly_before = len(h.tasks("complaint-weekly-summary"))
    h.tick("2026-11-23 09:00")
    weekly = h.tasks("complaint-weekly-summary")
    assert len(weekly) == weekly_before + 1
    assert weekly[-1].role == "cr_manager"
    assert weekly[-1].due_at == h.local("2026-11-23 12:00")
    h.tick("2026-11-23 16:59")
    daily_before = len(h.tasks("complaint-daily-summary"))
    h.tick("2026-11-23 17:00")
    daily = h.tasks("complaint-daily-summary")
    assert len(daily) == daily_before + 1
    assert (daily[-1].role, daily[-1].title) == ("cr_specialist", "售后投诉日汇总 2026-11-23")
    assert daily[-1].due_at == h.local("2026-11-23 18:00")
