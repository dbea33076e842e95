"""The rule forms for stored dates, fan-out, role choice, set, emit and complete (P9, P12, P14).

Each form compiles to exact rule objects, each mistake is reported at its file:line:col, and
each form runs end to end on a real store.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import date, time
from pathlib import Path

import pytest

from crmd.calendar.offsets import Offset
from crmd.calendar.schedule_spec import schedule_from_spec
from crmd.errors import RuleSetError
from crmd.events import BUILTIN_EVENT_TYPES
from crmd.rules.fieldcheck import sample_context
from crmd.rules.rule import (
    CancelAction,
    CompleteAction,
    DateTrigger,
    EmitAction,
    EventTrigger,
    RoleChoice,
    Rule,
    ScheduleTrigger,
    SetDateAction,
    SmsAction,
    TaskAction,
)
from crmd.rules.ruleset import load_rules
from crmd.rules.templates import Template
from crmd.site import Site
from crmd.testing import Harness

MakeSite = Callable[[str], Harness]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    (tmp_path / "rules").mkdir()
    return Site(
        root=tmp_path,
        name="测试店",
        event_types=(*BUILTIN_EVENT_TYPES, "complaint.reopened"),
    )


def load(site: Site, text: str) -> dict[str, Rule]:
    (site.rules_dir / "r.yaml").write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_rules(site).by_id()


def located(site: Site, text: str) -> list[str]:
    """Every error of the rule file as `file:line:col: message (rule id)`."""
    with pytest.raises(RuleSetError) as caught:
        load(site, text)
    return [str(e) for e in caught.value.errors]


SETTER = """
rules:
  - id: maintenance-due
    when: {event: service.completed}
    do:
      - set: {field: vehicle.next_maintenance, after: 6 months, km: 5000}
"""

# -- compiled forms -----------------------------------------------------------------------


def test_date_triggers_compile(site: Site) -> None:
    rules = load(
        site,
        SETTER
        + """
  - id: before
    when: {date: vehicle.next_maintenance, before: 14 days, at: "10:00"}
    do:
      - sms: {text: "保养到期 {{ vehicle.next_maintenance | date }} {{ customer.name }}"}
  - id: after
    when: {date: vehicle.next_maintenance, after: 2 working days}
    do:
      - task: {role: service_callback, title: "{{ vehicle.plate }}"}
  - id: on-the-day
    when: {date: vehicle.next_maintenance}
    do:
      - sms: {text: "今天保养"}
""",
    )
    assert rules["maintenance-due"].actions == (
        SetDateAction("vehicle.next_maintenance", Offset(6, "months"), 5000),
    )
    assert rules["before"].trigger == DateTrigger(
        "vehicle.next_maintenance", before=Offset(14, "days"), at=time(10, 0)
    )
    assert rules["after"].trigger == DateTrigger(
        "vehicle.next_maintenance", after=Offset(2, "working_days"), at=time(9, 0)
    )
    assert rules["on-the-day"].trigger == DateTrigger("vehicle.next_maintenance")


def test_for_each_customer_compiles_on_events_and_schedules(site: Site) -> None:
    rules = load(
        site,
        """
        rules:
          - id: weather-care
            when: {event: weather.alert, for_each: customer}
            where: {customer.member: true}
            do:
              - sms: {text: "{{ customer.name }}您好,{{ event.kind }}预警"}
          - id: monthly-care
            when: {monthly: 1, at: "09:00", for_each: customer}
            where: {customer.member: true}
            do:
              - sms: {text: "{{ customer.name }}您好"}
        """,
    )
    assert rules["weather-care"].trigger == EventTrigger(("weather.alert",), for_each="customer")
    schedule = schedule_from_spec({"monthly": 1, "at": "09:00"}, site.timezone, site.calendar)
    assert rules["monthly-care"].trigger == ScheduleTrigger(schedule, for_each="customer")
    assert [c.path for c in rules["monthly-care"].conditions] == ["customer.member"]


def test_role_choice_compiles(site: Site) -> None:
    rules = load(
        site,
        """
        rules:
          - id: complaint-callback
            when: {event: complaint.resolved}
            do:
              - task:
                  role: {by: event.department, sales: sales_callback, service: service_callback,
                         default: cr_specialist}
                  title: 投诉回访
        """,
    )
    assert rules["complaint-callback"].actions == (
        TaskAction(
            RoleChoice(
                "event.department",
                (("sales", "sales_callback"), ("service", "service_callback")),
                "cr_specialist",
            ),
            Template("投诉回访"),
        ),
    )


def test_emit_complete_and_cancel_matching_compile(site: Site) -> None:
    rules = load(
        site,
        """
        rules:
          - id: low-score
            when: {event: task.attempted}
            where: {event.score: {lt: 7}}
            do:
              - emit: {event: complaint.reopened, data: {reason: "评分 {{ event.score }}"}}
          - id: monthly-report
            when: {monthly: 10, at: "09:00"}
            do:
              - task: {role: cr_manager, title: 月报}
          - id: report-in
            when: {event: report.submitted}
            do:
              - complete: {rules: [monthly-report], matching: event.report}
              - cancel: {rules: [low-score, monthly-report], matching: event.report}
              - complete: {rules: [monthly-report]}
        """,
    )
    assert rules["low-score"].actions == (
        EmitAction("complaint.reopened", (("reason", Template("评分 {{ event.score }}")),)),
    )
    assert rules["report-in"].actions == (
        CompleteAction(("monthly-report",), "event.report"),
        CancelAction(("low-score", "monthly-report"), "event.report"),
        CompleteAction(("monthly-report",)),
    )


def test_set_dates_are_in_every_template_sample(site: Site) -> None:
    fields = ["vehicle.next_maintenance", "customer.next_visit"]
    event = sample_context(site, "r", "event", ("sale.delivered",), set_fields=fields)
    assert event["vehicle"]["next_maintenance"] == date(2026, 9, 1)
    assert event["customer"]["next_visit"] == date(2026, 9, 1)
    annual = sample_context(site, "r", "annual", set_fields=fields)
    assert "next_visit" in annual["customer"]
    assert "vehicle" not in annual
    on_customer = sample_context(site, "r", "date", vehicle=False, set_fields=fields)
    assert set(on_customer) == {"customer", "fire", "site"}
    assert set(sample_context(site, "r", "date")) == {"customer", "vehicle", "fire", "site"}
    fan = sample_context(site, "r", "schedule", for_each=True)
    assert set(fan) == {"customer", "fire", "site"}
    # A rule elsewhere in the set may use the stored date in its templates.
    rules = load(
        site,
        SETTER
        + """
  - id: other
    when: {event: sale.delivered}
    do:
      - sms: {text: "下次保养 {{ vehicle.next_maintenance | date }}"}
""",
    )
    assert rules["other"].actions == (
        SmsAction(Template("下次保养 {{ vehicle.next_maintenance | date }}")),
    )


# -- mistakes, each at its place ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """
            rules:
              - id: r
                when: {date: vehicle.next_maintenance, before: 14 days}
                do:
                  - sms: {text: hi}
            """,
            [
                "rules/r.yaml:3:18: no rule sets vehicle.next_maintenance; a date rule watches a "
                "date stored by a set action, like set: {field: vehicle.next_maintenance, "
                "after: 6 months} (rule r)"
            ],
            id="date-not-set",
        ),
        pytest.param(
            SETTER
            + """
  - id: r
    when: {date: event.at}
    do:
      - sms: {text: hi}
""",
            [
                "rules/r.yaml:8:18: date must be vehicle.<name> or customer.<name>, like "
                "vehicle.next_maintenance; got 'event.at' (rule r)"
            ],
            id="date-bad-field",
        ),
        pytest.param(
            SETTER
            + """
  - id: r
    when: {date: vehicle.next_maintenance, before: 2 hours}
    do:
      - sms: {text: hi}
""",
            [
                "rules/r.yaml:8:52: before must be in days, weeks, months or working days, like "
                "'14 days'; a date has no time of day, got '2 hours' (rule r)"
            ],
            id="date-offset-in-hours",
        ),
        pytest.param(
            SETTER
            + """
  - id: r
    when: {date: vehicle.next_maintenance, before: 1 day, after: 1 day}
    do:
      - sms: {text: hi}
""",
            ["rules/r.yaml:8:59: give before or after, not both (rule r)"],
            id="date-before-and-after",
        ),
        pytest.param(
            SETTER
            + """
  - id: r
    when: {date: vehicle.next_maintenance}
    do:
      - sms: {text: "{{ event.mileage }}"}
""",
            [
                "rules/r.yaml:10:21: sms.text: event is not available in a date rule: it has no "
                "event; use customer, vehicle, fire and site (rule r)"
            ],
            id="date-rule-has-no-event",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {event: task.attempted, count: 3, for_each: customer}
                do:
                  - sms: {text: hi}
            """,
            [
                "rules/r.yaml:3:45: for_each does not apply with count: a counting rule fires "
                "for the subject it counts (rule r)"
            ],
            id="for-each-with-count",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {event: weather.alert, for_each: customer}
                where: {vehicle.model: X}
                do:
                  - sms: {text: "{{ vehicle.plate }}"}
            """,
            [
                "rules/r.yaml:4:13: vehicle.model is not available in a rule with for_each: "
                "customer: its fires have event and customer, with no vehicle (rule r)",
                "rules/r.yaml:6:21: sms.text: vehicle is not available in a rule for "
                "weather.alert for each customer: it has no vehicle, and task is there only for "
                "task.* events (rule r)",
            ],
            id="for-each-event-has-no-vehicle",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {daily: "09:00", for_each: every}
                do:
                  - sms: {text: hi}
            """,
            ["rules/r.yaml:3:38: when.for_each must be one of: customer; got 'every' (rule r)"],
            id="for-each-only-customer",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {event: complaint.resolved}
                do:
                  - task:
                      role: {by: department, sales: sales_calback, default: service_callback}
                      title: hi
            """,
            [
                "rules/r.yaml:6:22: role.by field 'department' must start with event., "
                "customer. or vehicle., like customer.member (rule r)",
                "rules/r.yaml:6:41: unknown role 'sales_calback'; did you mean 'sales_callback'? "
                "(roles are listed under roles: in site.yaml) (rule r)",
            ],
            id="role-choice-mistakes",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {event: complaint.resolved}
                do:
                  - task: {role: {by: event.department, sales: sales}, title: hi}
            """,
            ["rules/r.yaml:5:22: role needs 'default' (rule r)"],
            id="role-choice-needs-default",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {daily: "09:00", for_each: customer}
                do:
                  - set: {field: vehicle.next_maintenance, after: 3 hours, km: 0}
            """,
            ["rules/r.yaml:5:68: set.km must be at least 1 (rule r)"],
            id="set-km-positive",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {daily: "09:00", for_each: customer}
                do:
                  - set: {field: vehicle.next_maintenance, after: 3 hours}
                  - set: {field: customer.next_visit, after: 1 month, km: 10}
                  - set: {field: next_visit, after: 1 month}
            """,
            [
                "rules/r.yaml:5:22: set vehicle.next_maintenance needs a rule whose fires have a "
                "vehicle, like an event rule; this one has none (rule r)",
                "rules/r.yaml:5:55: after must be in days, weeks, months or working days, like "
                "'14 days'; a date has no time of day, got '3 hours' (rule r)",
                "rules/r.yaml:6:59: km applies to vehicle dates only (rule r)",
                "rules/r.yaml:7:22: set field must be vehicle.<name> or customer.<name>, like "
                "vehicle.next_maintenance; got 'next_visit' (rule r)",
            ],
            id="set-mistakes",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {event: complaint.resolved}
                do:
                  - emit: {event: complaint.reopend, data: {reason: "{{ evnt.kind }}"}}
                  - emit: {event: complaint.resolved}
            """,
            [
                "rules/r.yaml:5:23: unknown event type 'complaint.reopend'; did you mean "
                "'complaint.reopened'? (a site adds its own under event_types: in site.yaml) "
                "(rule r)",
                "rules/r.yaml:5:57: data.reason: unknown name 'evnt' in the template; names "
                "here: customer, vehicle, event, fire, site; did you mean 'event'? (rule r)",
                "rules/r.yaml:6:23: emit complaint.resolved from a rule for complaint.resolved "
                "would fire itself again and again (rule r)",
            ],
            id="emit-mistakes",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {event: report.submitted}
                do:
                  - complete: {rules: [monthly-reprot], matching: report}
                  - cancel: {rules: [r], matching: task.rule}
            """,
            [
                "rules/r.yaml:5:28: complete names rule 'monthly-reprot', which is in no rule "
                "file (rule r)",
                "rules/r.yaml:5:55: matching field 'report' must start with event., customer. "
                "or vehicle., like customer.member (rule r)",
                "rules/r.yaml:6:40: matching field 'task.rule' must start with event., "
                "customer. or vehicle., like customer.member (rule r)",
            ],
            id="complete-mistakes",
        ),
        pytest.param(
            """
            rules:
              - id: r
                when: {event: report.submitted}
                do:
                  - complete: {matching: event.report}
            """,
            ["rules/r.yaml:5:19: complete needs 'rules' (rule r)"],
            id="complete-needs-rules",
        ),
    ],
)
def test_mistakes_are_reported_where_they_are(site: Site, text: str, expected: list[str]) -> None:
    assert located(site, text) == expected


# -- end to end -------------------------------------------------------------------------------


def test_a_set_date_fires_a_date_rule_at_its_local_time(make_site: MakeSite) -> None:
    h = make_site(
        SETTER
        + """
  - id: maintenance-reminder
    when: {date: vehicle.next_maintenance, before: 14 days, at: "10:00"}
    do:
      - sms:
          text: "{{ customer.name }}您好,{{ vehicle.plate }} 请于
            {{ vehicle.next_maintenance | date }} 前保养"
"""
    )
    h.tick("2026-11-01 08:00")
    h.customer("C1", name="张三", phone="13800138000")
    h.vehicle("V1", "C1", plate="沪A12345")
    h.event("service.completed", "2026-11-02 10:00", "C1", "V1", data={"mileage": 10000})
    h.tick("2026-11-02 10:01")
    (setter,) = h.fires("maintenance-due")
    assert setter.status == "fired"
    # Six months on is 2 May 2027 (one reading: no mileage projection); 14 days before, 10:00.
    assert h.tick("2027-04-18 09:59").fires == []
    report = h.tick("2027-04-18 10:00")
    assert [(f.rule_id, f.fire_at) for f in report.fires] == [
        ("maintenance-reminder", h.local("2027-04-18 10:00"))
    ]
    (sms,) = h.outbox()
    assert sms.body == "张三您好,沪A12345 请于 2027-05-02 前保养"
    assert h.tick("2027-04-19 10:00").fires == []


def test_for_each_customer_reaches_every_member(make_site: MakeSite) -> None:
    h = make_site(
        """
rules:
  - id: weather-care
    when: {event: weather.alert, for_each: customer}
    where: {customer.member: true}
    do:
      - task: {role: member_specialist, title: "关怀 {{ customer.name }} {{ event.kind }}"}
      - sms: {text: "{{ customer.name }}您好,明日{{ event.kind }},请注意行车安全"}
"""
    )
    h.tick("2026-11-01 08:00")
    h.customer("C1", name="张三", phone="13800000001", member=True)
    h.customer("C2", name="李四", phone="13800000002", member=False)
    h.customer("C3", name="王五", phone="13800000003", member=True)
    h.event("weather.alert", "2026-11-02 10:00", data={"kind": "暴雨"})
    h.tick("2026-11-02 10:01")
    assert sorted(t.title for t in h.tasks()) == ["关怀 张三 暴雨", "关怀 王五 暴雨"]
    assert sorted(m.body for m in h.outbox()) == [
        "张三您好,明日暴雨,请注意行车安全",
        "王五您好,明日暴雨,请注意行车安全",
    ]
    assert h.tick("2026-11-02 10:05").fires == []


def test_role_choice_picks_the_role_by_the_field(make_site: MakeSite) -> None:
    h = make_site(
        """
rules:
  - id: complaint-callback
    when: {event: complaint.resolved}
    do:
      - task:
          role: {by: event.department, sales: sales_callback, default: service_callback}
          title: "投诉回访 {{ customer.name }}"
"""
    )
    h.tick("2026-11-01 08:00")
    h.customer("C1")
    h.customer("C2")
    h.event("complaint.resolved", "2026-11-02 10:00", "C1", data={"department": "sales"})
    h.event("complaint.resolved", "2026-11-02 10:00", "C2", data={"department": "parts"})
    h.tick("2026-11-02 10:01")
    assert {t.customer_id: t.role for t in h.tasks()} == {
        "C1": "sales_callback",
        "C2": "service_callback",
    }


def test_an_emitted_event_fires_another_rule(make_site: MakeSite) -> None:
    h = make_site(
        """
rules:
  - id: low-score
    when: {event: task.attempted}
    where: {event.score: {lt: 7}}
    do:
      - emit: {event: complaint.opened, data: {summary: "评分 {{ event.score }}"}}
  - id: complaint-followup
    when: {event: complaint.opened}
    do:
      - task: {role: cr_manager, title: "投诉跟进 {{ event.summary }}"}
  - id: call
    when: {event: sale.delivered}
    do:
      - task: {role: sales_callback, title: 回访}
"""
    )
    h.tick("2026-11-01 08:00")
    h.customer("C1")
    h.event("sale.delivered", "2026-11-02 10:00", "C1")
    h.tick("2026-11-02 10:01")
    (call,) = h.tasks("call")
    h.attempt(call.id, "reached", "2026-11-02 11:00", score=5)
    h.tick("2026-11-02 11:01")
    (followup,) = h.tasks("complaint-followup")
    assert followup.title == "投诉跟进 评分 5"
    assert followup.customer_id == "C1"


def test_complete_matching_closes_only_the_named_rules_task(make_site: MakeSite) -> None:
    h = make_site(
        """
rules:
  - id: sales-report
    when: {event: sale.delivered}
    do:
      - task: {role: sales_manager, title: 销售报表}
  - id: service-report
    when: {event: sale.delivered}
    do:
      - task: {role: service_manager, title: 售后报表}
  - id: report-in
    when: {event: report.submitted}
    do:
      - complete: {rules: [sales-report, service-report], matching: event.report}
"""
    )
    h.tick("2026-11-01 08:00")
    h.customer("C1")
    h.event("sale.delivered", "2026-11-02 10:00", "C1")
    h.tick("2026-11-02 10:01")
    h.event("report.submitted", "2026-11-03 10:00", "C1", data={"report": "service-report"})
    h.tick("2026-11-03 10:01")
    assert {t.rule_id: t.status for t in h.tasks()} == {
        "sales-report": "open",
        "service-report": "done",
    }


def test_a_schedule_for_each_customer_fires_per_member(make_site: MakeSite) -> None:
    h = make_site(
        """
rules:
  - id: monthly-care
    when: {monthly: 3, at: "09:00", for_each: customer}
    where: {customer.member: true}
    do:
      - sms: {text: "{{ customer.name }}您好,本月会员关怀"}
"""
    )
    h.tick("2026-11-01 08:00")
    h.customer("C1", name="张三", phone="13800000001", member=True)
    h.customer("C2", name="李四", phone="13800000002", member=False)
    assert h.tick("2026-11-03 08:59").fires == []
    h.tick("2026-11-03 09:00")
    assert [m.body for m in h.outbox()] == ["张三您好,本月会员关怀"]
