"""The shipped care and reminder rules (rules/reminders.yaml, DOMAIN.md P11-P19)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Row

from crmd.testing import Harness

MakeShipped = Callable[..., Harness]


@pytest.fixture
def h(make_policy_site: MakeShipped) -> Harness:
    return make_policy_site()


def sms(h: Harness, rule: str) -> list[Row[Any]]:
    return [m for m in h.outbox() if m.rule_id == rule]


# ---------------------------------------------------------------- P11 break-in reminder


def test_break_in_reminder_in_the_third_week(h: Harness) -> None:
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")
    h.tick("2026-11-16 09:59")
    assert h.tasks("break-in-reminder") == []
    h.tick("2026-11-16 10:00")
    task = h.only_task("break-in-reminder")
    assert (task.role, task.title) == ("service_callback", "首保提醒 张三 朗逸")
    assert task.due_at == h.local("2026-11-23 18:00")  # three weeks after delivery
    h.tick("2026-11-23 18:00")
    assert h.only_task("break-in-reminder").overdue


def test_break_in_reminder_not_needed_after_an_early_service_visit(h: Harness) -> None:
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")
    h.event("service.completed", "2026-11-12 11:00", "C1", "V1", data={"mileage": 900})
    h.tick("2026-11-17 10:00")
    assert h.tasks("break-in-reminder") == []
    assert [f.status for f in h.fires("break-in-reminder")] == ["cancelled"]


# ---------------------------------------------------------------- P12 maintenance


def test_maintenance_six_months_after_a_visit(h: Harness) -> None:
    h.event("service.completed", "2026-01-10 11:00", "C1", "V1", data={"mileage": 10000})
    h.tick("2026-06-26 09:59")
    assert h.tasks("maintenance-reminder") == []
    h.tick("2026-06-26 10:00")
    reminder = h.only_task("maintenance-reminder")
    assert (reminder.role, reminder.title) == ("service_callback", "保养提醒 张三 粤A12345")
    assert reminder.note == "下次保养 2026-07-10,电话 13800138000"
    assert reminder.due_at == h.local("2026-07-03 18:00")
    h.tick("2026-07-03 18:00")
    assert h.only_task("maintenance-reminder").overdue

    h.tick("2026-07-10 09:59")
    assert h.tasks("maintenance-due") == []
    h.tick("2026-07-10 10:00")
    due = h.only_task("maintenance-due")
    assert (due.role, due.due_at) == ("service_callback", h.local("2026-07-10 18:00"))


@pytest.mark.postgres_sample
def test_maintenance_by_projected_mileage_and_a_new_visit_reschedules(h: Harness) -> None:
    h.event("service.completed", "2026-01-10 11:00", "C1", "V1", data={"mileage": 10000})
    # 60 days, 3000 km: 50 km a day, so 5000 km more in 100 days (19 June), before 6 months.
    h.event("service.completed", "2026-03-11 11:00", "C1", "V1", data={"mileage": 13000})
    h.tick("2026-06-05 09:59")
    assert h.tasks("maintenance-reminder") == []
    h.tick("2026-06-05 10:00")
    reminder = h.only_task("maintenance-reminder")
    assert reminder.note.startswith("下次保养 2026-06-19")

    # The customer comes in early: the open reminder is cancelled and the date moves.
    # 151 days, 7500 km: 5000 km more in 101 days, 19 September, before 10 December.
    h.event("service.completed", "2026-06-10 11:00", "C1", "V1", data={"mileage": 17500})
    h.tick("2026-06-10 11:00")
    assert h.only_task("maintenance-reminder").status == "cancelled"
    h.tick("2026-06-19 12:00")
    assert h.tasks("maintenance-due") == []  # the old date no longer fires
    h.tick("2026-09-05 09:59")
    assert len(h.tasks("maintenance-reminder")) == 1
    h.tick("2026-09-05 10:00")
    new = h.tasks("maintenance-reminder")[-1]
    assert (new.status, new.note[:15]) == ("open", "下次保养 2026-09-19")


def test_a_visit_cancels_the_due_day_task_too(h: Harness) -> None:
    h.event("service.completed", "2026-01-10 11:00", "C1", "V1", data={"mileage": 10000})
    h.tick("2026-07-10 10:00")
    assert h.only_task("maintenance-due").status == "open"
    h.event("service.completed", "2026-07-10 15:00", "C1", "V1", data={"mileage": 14000})
    h.tick("2026-07-10 15:00")
    assert h.only_task("maintenance-due").status == "cancelled"


# ---------------------------------------------------------------- P13 greetings


@pytest.mark.postgres_sample
def test_birthday_sms_to_members_in_the_morning_never_to_opted_out(h: Harness) -> None:
    h.customer("C1", name="张三", member=True, birthday=date(1990, 11, 23))
    h.customer("C2", name="李四", phone="13600136000", member=False, birthday=date(1990, 11, 23))
    h.customer(
        "C3",
        name="王五",
        phone="13500135000",
        member=True,
        opt_out=True,
        birthday=date(1990, 11, 23),
    )
    h.tick("2026-11-23 08:59")
    assert sms(h, "birthday-sms") == []
    h.tick("2026-11-23 09:00")
    (message,) = sms(h, "birthday-sms")
    assert message.customer_id == "C1"
    assert message.body == "尊敬的张三,示例汽车4S店祝您生日快乐!"
    assert message.not_before == h.local("2026-11-23 09:00")
    h.tick("2026-11-24 09:00")
    assert len(sms(h, "birthday-sms")) == 1


@pytest.mark.parametrize(
    ("year", "day"), [(2027, "2027-02-28"), (2028, "2028-02-29")], ids=["common", "leap"]
)
def test_birthday_on_29_february(make_policy_site: MakeShipped, year: int, day: str) -> None:
    h = make_policy_site(start=f"{year}-02-01 00:00")
    h.customer("C9", name="赵六", phone="13900139000", member=True, birthday=date(2000, 2, 29))
    h.tick(f"{year}-02-27 09:00")
    if year == 2028:
        h.tick("2028-02-28 09:00")
    h.tick(f"{day} 08:59")
    assert sms(h, "birthday-sms") == []
    h.tick(f"{day} 09:00")
    (message,) = sms(h, "birthday-sms")
    assert message.customer_id == "C9"
    h.tick(f"{year}-03-01 09:00")
    assert len(sms(h, "birthday-sms")) == 1


def test_holiday_greetings_on_fixed_dates(h: Harness) -> None:
    h.customer("C2", name="李四", phone="13600136000", member=False)
    h.tick("2026-10-01 08:59")
    assert sms(h, "national-day-greeting") == []
    h.tick("2026-10-01 09:00")
    (message,) = sms(h, "national-day-greeting")
    assert message.customer_id == "C1"
    h.tick("2027-01-01 08:59")
    before = len(sms(h, "new-year-greeting"))  # 1 January 2026 fired when the rules started
    h.tick("2027-01-01 09:00")
    (message,) = sms(h, "new-year-greeting")[before:]
    assert (message.customer_id, message.not_before) == ("C1", h.local("2027-01-01 09:00"))


@pytest.mark.parametrize(
    ("rule", "day"),
    [
        ("spring-festival-greeting", "2026-02-17"),  # 正月初一
        ("mid-autumn-greeting", "2026-09-25"),
        ("spring-festival-greeting", "2027-02-06"),  # a year whose notice is unpublished
        ("mid-autumn-greeting", "2028-10-03"),  # on a National Day holiday
    ],
)
@pytest.mark.postgres_sample
def test_lunar_holiday_greetings_follow_the_lunar_calendar(
    make_policy_site: MakeShipped, rule: str, day: str
) -> None:
    h = make_policy_site(start=f"{day[:4]}-01-01 00:00")
    h.customer("C2", name="李四", phone="13600136000", member=True, opt_out=True)
    h.tick(f"{day} 08:59")
    assert sms(h, rule) == []
    h.tick(f"{day} 09:00")
    (message,) = sms(h, rule)
    assert (message.customer_id, message.not_before) == ("C1", h.local(f"{day} 09:00"))
    assert "张三" in message.body
    h.tick(f"{day} 23:00")
    assert len(sms(h, rule)) == 1


# ---------------------------------------------------------------- P14 weather care


@pytest.mark.postgres_sample
def test_weather_alert_reaches_every_member_who_has_not_opted_out(h: Harness) -> None:
    h.customer("C2", name="李四", phone="13600136000", member=False)
    h.customer("C3", name="王五", phone="13500135000", member=True, opt_out=True)
    h.customer("C4", name="赵六", phone="13700137000", member=True)
    h.tick("2026-11-20 15:59")
    h.event("weather.alert", "2026-11-20 16:00", data={"kind": "大风降温"})
    h.tick("2026-11-20 15:59")
    assert sms(h, "weather-care") == []
    h.tick("2026-11-20 16:00")
    messages = sms(h, "weather-care")
    assert sorted(m.customer_id for m in messages) == ["C1", "C4"]
    assert messages[0].body.startswith("尊敬的")
    assert "大风降温" in messages[0].body


# ---------------------------------------------------------------- P15, P16 after purchase


def test_new_buyer_is_enrolled_the_same_day(h: Harness) -> None:
    h.customer("C2", name="李四", phone="13600136000", member=False)
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")  # already a member
    h.event("sale.delivered", "2026-11-02 16:00", "C2")
    h.tick("2026-11-02 15:59")
    assert h.tasks("club-enrolment") == []
    h.tick("2026-11-02 16:00")
    task = h.only_task("club-enrolment")
    assert (task.role, task.customer_id) == ("member_specialist", "C2")
    assert task.due_at == h.local("2026-11-02 23:59")
    h.event("member.joined", "2026-11-02 17:00", "C2")
    h.tick("2026-11-02 17:00")
    assert h.only_task("club-enrolment").status == "done"


def test_thank_you_letters(h: Harness) -> None:
    h.event("sale.delivered", "2026-11-02 15:00", "C1", "V1")
    h.event("service.completed", "2026-11-03 11:00", "C1", "V1")
    h.tick("2026-11-02 14:59")
    assert h.tasks("purchase-thank-you") == []
    h.tick("2026-11-03 11:00")
    buy, service = h.only_task("purchase-thank-you"), h.only_task("service-thank-you")
    assert (buy.role, buy.title) == ("cr_specialist", "寄购车感谢信 张三(总经理签名)")
    assert buy.due_at == h.local("2026-11-03 17:00")
    assert service.title == "寄服务感谢信 张三(售后经理签名)"
    assert service.due_at == h.local("2026-11-04 17:00")
    h.tick("2026-11-03 17:00")
    assert h.only_task("purchase-thank-you").overdue


# ---------------------------------------------------------------- P17, P19 lists


def test_monthly_and_daily_lists(h: Harness) -> None:
    h.tick("2026-12-01 08:59")
    before = {r: len(h.tasks(r)) for r in ("not-returned-lists", "home-visit-list")}
    h.tick("2026-12-01 09:00")
    lists = h.tasks("not-returned-lists")
    assert len(lists) == before["not-returned-lists"] + 1
    assert lists[-1].role == "cr_specialist"
    assert lists[-1].due_at == h.local("2026-12-05 17:00")
    visits = h.tasks("home-visit-list")
    assert len(visits) == before["home-visit-list"] + 1
    assert (visits[-1].role, visits[-1].due_at) == ("cr_manager", h.local("2026-12-10 17:00"))
    stats = h.tasks("intake-statistics")[-1]
    assert stats.title == "更新 N-2/N-3、N-5/N-6 进厂统计 2026-12-01"
    assert stats.due_at == h.local("2026-12-01 17:00")
