"""Nothing a customer is owed is dropped: missing data, failed fires kept, shown, retried.

Missing optional data shows as a placeholder in the task and a warning on it
(crmd/rules/placeholders.py); a fire that cannot be done at all stays failed in the ledger with
what to fix, counted where people look, and is made once the data is there (crmd/store/ledger.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from crmd.testing import Harness

MakeShipped = Callable[..., Harness]
MakeSite = Callable[[str], Harness]


def test_a_delivery_without_its_vehicle_still_gets_its_callback(
    make_shipped: MakeShipped,
) -> None:
    # P1: the title reads vehicle.model; the delivery was keyed in without a vehicle id.
    h = make_shipped(("callbacks.yaml",), start="2026-03-01 00:00")
    h.event("sale.delivered", "2026-03-02 10:00", "C1", None, event_id="D1")
    h.tick("2026-03-05 00:00")
    task = h.only_task("sales-callback")
    assert task.title == "销售回访 张三 [缺 vehicle.model]"
    assert task.warning == "missing data: vehicle.model"
    assert h.fires("sales-callback")[0].status == "fired"


def test_a_rule_may_give_its_own_default(make_site: MakeSite) -> None:
    h = make_site(
        """
rules:
  - id: callback
    when: {event: sale.delivered}
    do:
      - task:
          role: sales_callback
          title: "回访 {{ customer.name }} {{ vehicle.model | default('爱车') }}"
"""
    )
    h.tick("2026-03-01 00:00")
    h.customer("C1", name="张三")
    h.event("sale.delivered", "2026-03-02 10:00", "C1", event_id="D1")
    h.tick("2026-03-02 10:00")
    task = h.only_task("callback")
    assert task.title == "回访 张三 爱车"
    assert task.warning is None


def test_an_event_for_an_unknown_customer_fails_and_is_made_once_imported(
    make_shipped: MakeShipped,
) -> None:
    h = make_shipped(("callbacks.yaml",), start="2026-03-01 00:00")
    h.event("sale.delivered", "2026-03-02 10:00", "C9", None, event_id="D9")
    report = h.tick("2026-03-05 00:00")
    (failed,) = h.fires("sales-callback")
    assert failed.status == "failed"
    assert "customer C9 is not in the store" in failed.detail["reason"]
    assert h.tasks("sales-callback") == []
    assert report.failed_pending >= 1
    # Nothing changed: the next tick leaves it failed, and makes nothing twice.
    h.tick("2026-03-05 01:00")
    assert [f.status for f in h.fires("sales-callback")] == ["failed"]
    # The customer is imported: the next tick makes the fire, in its own ledger row.
    h.customer("C9", name="王五", phone="13800138009")
    report = h.tick("2026-03-05 02:00")
    assert report.retried >= 1
    (done,) = h.fires("sales-callback")
    assert (done.id, done.status) == (failed.id, "fired")
    assert h.only_task("sales-callback").customer_id == "C9"
    h.tick("2026-03-05 03:00")
    assert len(h.tasks("sales-callback")) == 1
    assert h.tick("2026-03-05 04:00").failed_pending == 0


SMS_RULE = """
rules:
  - id: welcome
    when: {event: member.joined}
    do:
      - sms: {text: "欢迎 {{ customer.name }}"}
"""


def test_an_sms_to_a_customer_without_a_number_fails_until_there_is_one(
    make_site: MakeSite,
) -> None:
    h = make_site(SMS_RULE)
    h.tick("2026-03-01 00:00")
    h.customer("C1", name="张三")
    h.event("member.joined", "2026-03-02 10:00", "C1", event_id="J1")
    h.tick("2026-03-02 10:00")
    (fire,) = h.fires("welcome")
    assert fire.status == "failed"
    assert "no phone number" in fire.detail["reason"]
    assert h.outbox() == []
    h.customer("C1", name="张三", phone="13800138000")
    h.tick("2026-03-02 10:05")
    h.tick("2026-03-02 10:10")
    assert [(m.recipient, m.body) for m in h.outbox()] == [("13800138000", "欢迎 张三")]
    assert h.fires("welcome")[0].status == "fired"


def test_an_sms_never_shows_a_placeholder_to_a_customer(make_site: MakeSite) -> None:
    h = make_site(SMS_RULE)
    h.tick("2026-03-01 00:00")
    h.customer("C1", name="", phone="13800138000")
    h.event("member.joined", "2026-03-02 10:00", "C1", event_id="J1")
    h.tick("2026-03-02 10:00")
    assert h.outbox() == []
    reason = h.fires("welcome")[0].detail["reason"]
    assert "the SMS would show placeholders for missing customer.name" in reason


RAISING = """
rules:
  - id: score-ratio
    when: {event: survey.scored}
    do:
      - task:
          role: cr_manager
          title: "{{ 100 // (event.score | int(1)) }}"
  - id: welcome
    when: {event: member.joined}
    do:
      - task: {role: member_specialist, title: "欢迎 {{ customer.name }}", due: 1 hour}
"""


def test_a_template_raising_on_one_event_fails_that_fire_alone(
    make_site: MakeSite, tmp_path: Path
) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "site.yaml").write_text(
        "event_types: {member.joined: {fields: [score]}}\n", encoding="utf-8"
    )
    h = make_site(RAISING.replace("survey.scored", "member.joined"))
    h.tick("2026-03-01 00:00")
    h.customer("C1", name="张三")
    h.customer("C2", name="李四")
    h.event("member.joined", "2026-03-02 10:00", "C1", data={"score": 0}, event_id="J1")
    h.event("member.joined", "2026-03-02 10:00", "C2", data={"score": 4}, event_id="J2")
    report = h.tick("2026-03-02 12:00")  # raises nothing
    assert report.errors == []
    statuses = {(f.rule_id, f.customer_id): f.status for f in h.fires()}
    assert statuses == {
        ("score-ratio", "C1"): "failed",
        ("score-ratio", "C2"): "fired",
        ("welcome", "C1"): "fired",
        ("welcome", "C2"): "fired",
    }
    failed = next(f for f in h.fires() if f.status == "failed")
    assert "ZeroDivisionError" in failed.detail["reason"]
    # The same tick went on to mark the welcome tasks (due 11:00) overdue.
    assert report.overdue_count == 2


def test_a_task_is_made_even_when_its_sms_cannot_go(make_site: MakeSite) -> None:
    # A fire with a task and an SMS, for a customer without a number: the call is still
    # owed, so the task is made and says the SMS was not sent.
    h = make_site(
        """
rules:
  - id: thanks
    when: {event: sale.delivered}
    do:
      - task: {role: sales_callback, title: "回访 {{ customer.name }}"}
      - sms: {text: "感谢 {{ customer.name }}"}
"""
    )
    h.tick("2026-03-01 00:00")
    h.customer("C1", name="张三")
    h.event("sale.delivered", "2026-03-02 10:00", "C1", event_id="D1")
    h.tick("2026-03-02 10:00")
    task = h.only_task("thanks")
    assert task.warning == "not sent: the customer has no phone number for the SMS"
    assert h.outbox() == []
    assert h.fires("thanks")[0].status == "fired"


def test_a_retry_that_needs_an_unknown_calendar_year_waits(make_site: MakeSite) -> None:
    # The fire failed (no such customer); when the customer arrives, its task's due time
    # needs 2027's working calendar, not known here: the fire stays failed, the tick goes on.
    h = make_site(
        """
rules:
  - id: callback
    when: {event: sale.delivered}
    do:
      - task: {role: sales_callback, title: "回访 {{ customer.name }}", due: 3 working days}
"""
    )
    h.tick("2026-12-01 00:00")
    h.event("sale.delivered", "2026-12-30 10:00", "C9", event_id="D9")
    h.tick("2026-12-30 10:00")
    assert [f.status for f in h.fires("callback")] == ["failed"]
    h.customer("C9", name="王五")
    h.engine.retried_all = False  # as after a restart: every failed fire is tried again
    report = h.tick("2026-12-30 10:05")
    assert report.retried == 0  # tried, and left as it was
    assert [f.status for f in h.fires("callback")] == ["failed"]
    assert h.tasks("callback") == []
    assert report.failed_pending == 1
