"""Loading rule files: compiled objects, and every mistake reported at its file:line:col."""

from __future__ import annotations

import textwrap
from datetime import time, timedelta
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from crmd.calendar.offsets import Offset
from crmd.calendar.schedule_spec import schedule_from_spec
from crmd.errors import RuleError, RuleSetError
from crmd.rules.conditions import Condition
from crmd.rules.fieldcheck import sample_context
from crmd.rules.rule import (
    AnnualTrigger,
    Backfill,
    CancelAction,
    Due,
    EmailAction,
    EventTrigger,
    ScheduleTrigger,
    SmsAction,
    TaskAction,
    Unless,
)
from crmd.rules.ruleset import check_summary, load_rule_files, load_rules
from crmd.rules.schema import SCHEMA
from crmd.rules.templates import Template
from crmd.site import Site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    (tmp_path / "rules").mkdir()
    return Site(root=tmp_path, name="测试店")


def write(site: Site, name: str, text: str) -> Path:
    path = site.rules_dir / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def errors(site: Site) -> list[RuleError]:
    with pytest.raises(RuleSetError) as caught:
        load_rules(site)
    return caught.value.errors


def located(site: Site) -> list[str]:
    """Every error as `file:line:col: message (rule id)`."""
    return [str(e) for e in errors(site)]


CALLBACKS = """
rules:
  - id: sales-callback
    description: 销售回访:交车后 N+3 至 N+5 天致电客户 (P1)
    when: {event: sale.delivered, after: 3 days, at: "09:00"}
    where:
      customer.member: true
      event.kind: {not: insurance}
    unless: {events: [service.completed], same: vehicle}
    backfill: 30 days
    do:
      - task:
          role: sales_callback
          title: "销售回访 {{ customer.name }}"
          note: "车型 {{ vehicle.model }},交车 {{ event.at | date }}"
          due: 2 days

  - id: unreachable-to-sales
    when: {event: task.attempted, count: 3, per: task}
    where: {event.outcome: [powered_off, forwarded, unreachable]}
    do:
      - task: {role: sales, title: "核实联系方式 {{ task.title }}", due: 3 working days}
      - cancel: {rules: [sales-callback]}

  - id: complaint-follow-up
    enabled: false
    when: {event: [complaint.resolved, complaint.opened], after: 2 hours}
    unless: [customer.opted_out]
    backfill: all
    do:
      - sms: {text: "{{ customer.name }}您好,您的问题({{ event.summary }})已处理。"}
"""

REPORTS = """
rules:
  - id: monthly-cr-report
    when: {monthly: 10, at: "09:00", shift: previous working day}
    do:
      - task:
          role: cr_manager
          title: 上月工作总结及回访报表
          due: {day: last, at: "17:00", shift: previous working day}
      - email:
          subject: "月度报表 {{ fire.at | date }}"
          body: "{{ site.name }}"
          to: [gm@example.com]

  - id: birthday-sms
    when: {annually: customer.birthday, at: 9:30, feb29: mar1}
    backfill: 2 months
    do:
      - sms: {text: "{{ customer.name }}您好,祝您生日快乐!"}
      - email: {subject: 生日快乐, body: "{{ customer.name }}", to: customer}
"""


def test_a_valid_set_of_files_loads_compiled(site: Site) -> None:
    write(site, "callbacks.yaml", CALLBACKS)
    write(site, "reports.yaml", REPORTS)
    write(site, "empty.yaml", "")
    write(site, "none.yaml", "rules: []\n")
    write(site, "blank.yaml", "# every rule moved to callbacks.yaml\nrules:\n")
    ruleset = load_rules(site)

    assert check_summary(ruleset) == [
        ("rules/blank.yaml", 0),
        ("rules/callbacks.yaml", 3),
        ("rules/empty.yaml", 0),
        ("rules/none.yaml", 0),
        ("rules/reports.yaml", 2),
    ]
    rules = ruleset.by_id()
    assert [r.id for r in ruleset.rules] == [
        "sales-callback",
        "unreachable-to-sales",
        "complaint-follow-up",
        "monthly-cr-report",
        "birthday-sms",
    ]
    assert [r.id for r in ruleset.enabled()] == [
        "sales-callback",
        "unreachable-to-sales",
        "monthly-cr-report",
        "birthday-sms",
    ]

    callback = rules["sales-callback"]
    assert (callback.file, callback.line) == ("rules/callbacks.yaml", 2)
    assert callback.description == "销售回访:交车后 N+3 至 N+5 天致电客户 (P1)"
    assert callback.trigger == EventTrigger(("sale.delivered",), Offset(3, "days"), time(9, 0))
    assert callback.conditions == (
        Condition("customer.member", "eq", True),
        Condition("event.kind", "ne", "insurance"),
    )
    assert callback.unless == Unless(("service.completed",), "vehicle")
    assert callback.backfill == Backfill(timedelta(days=30))
    assert callback.actions == (
        TaskAction(
            role="sales_callback",
            title=Template("销售回访 {{ customer.name }}"),
            due=Due(after=Offset(2, "days")),
            note=Template("车型 {{ vehicle.model }},交车 {{ event.at | date }}"),
        ),
    )

    counting = rules["unreachable-to-sales"]
    assert counting.line == 17
    assert counting.trigger == EventTrigger(("task.attempted",), count=3, per="task")
    assert counting.conditions == (
        Condition("event.outcome", "in", ("powered_off", "forwarded", "unreachable")),
    )
    assert counting.actions[0] == TaskAction(
        "sales", Template("核实联系方式 {{ task.title }}"), Due(after=Offset(3, "working_days"))
    )
    assert counting.actions[1] == CancelAction(("sales-callback",))

    complaint = rules["complaint-follow-up"]
    assert complaint.enabled is False
    assert complaint.trigger == EventTrigger(
        ("complaint.resolved", "complaint.opened"), Offset(2, "hours")
    )
    assert complaint.unless == Unless(("customer.opted_out",), "customer")
    assert complaint.backfill == Backfill(None)
    assert isinstance(complaint.actions[0], SmsAction)

    report = rules["monthly-cr-report"]
    assert (report.file, report.line) == ("rules/reports.yaml", 2)
    assert report.trigger == ScheduleTrigger(
        schedule_from_spec(
            {"monthly": 10, "at": "09:00", "shift": "previous working day"},
            site.timezone,
            site.calendar,
        )
    )
    assert report.actions == (
        TaskAction(
            "cr_manager",
            Template("上月工作总结及回访报表"),
            Due(at=time(17, 0), day="last", shift="previous_working_day"),
        ),
        EmailAction(
            Template("月度报表 {{ fire.at | date }}"),
            Template("{{ site.name }}"),
            ("gm@example.com",),
        ),
    )

    birthday = rules["birthday-sms"]
    assert birthday.line == 14
    # Unquoted 9:30 is the YAML 1.1 integer 570, read as 09:30.
    assert birthday.trigger == AnnualTrigger("customer.birthday", time(9, 30), "mar1")
    assert birthday.backfill == Backfill(timedelta(days=62))
    assert birthday.actions[1] == EmailAction(
        Template("生日快乐"), Template("{{ customer.name }}"), ()
    )


def test_load_rule_files_takes_an_explicit_list(site: Site) -> None:
    first = write(site, "b.yaml", REPORTS)
    second = write(site, "a.yaml", CALLBACKS)
    ruleset = load_rule_files([first, second], site)
    assert check_summary(ruleset) == [("rules/b.yaml", 2), ("rules/a.yaml", 3)]
    assert ruleset.rules[0].id == "monthly-cr-report"


def test_a_file_with_a_byte_order_mark_loads(site: Site) -> None:
    text = "rules:\n  - id: bom\n    when: {event: member.joined}\n    do: [{sms: {text: 欢迎}}]\n"
    (site.rules_dir / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    ruleset = load_rules(site)
    assert ruleset.rules[0].id == "bom"
    assert ruleset.rules[0].line == 2


def test_a_site_without_a_rules_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuleSetError, match="no rules directory at"):
        load_rules(Site(root=tmp_path))


# Each case: a rule file, and the exact errors it gives (file:line:col: message (rule id)).
# Columns are 1-based and point at the offending value, or at the key for unknown keys.
BAD = {
    "unknown-key-in-flow-when": (
        """
        rules:
          - id: r
            when: {event: sale.delivered, afterr: 3 days}
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:3:35: unknown key 'afterr' in when; expected one of: event, after, "
            "at, count, per, for_each; did you mean 'after'? (rule r)"
        ],
    ),
    "unknown-key-on-line-4": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            doo: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:2:5: rule needs 'do' (rule r)",
            "rules/r.yaml:4:5: unknown key 'doo' in rule; expected one of: id, description, "
            "enabled, when, where, unless, backfill, late, do; did you mean 'do'? (rule r)",
        ],
    ),
    "no-trigger-form": (
        """
        rules:
          - id: r
            when: {after: 3 days}
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:3:11: when needs exactly one of: event, daily, weekly, monthly, "
            "quarterly, cron, holiday, annually, date (rule r)"
        ],
    ),
    "two-trigger-forms": (
        """
        rules:
          - id: r
            when:
              daily: "09:00"
              weekly: monday
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:4:7: when needs exactly one of: event, daily, weekly, monthly, "
            "quarterly, cron, holiday, annually, date; found daily, weekly (rule r)"
        ],
    ),
    "unknown-key-in-task": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do:
              - task:
                  role: sales
                  titel: 回访
        """,
        [
            "rules/r.yaml:6:11: task needs 'title' (rule r)",
            "rules/r.yaml:7:11: unknown key 'titel' in task; expected one of: role, title, "
            "note, due; did you mean 'title'? (rule r)",
        ],
    ),
    "two-actions-in-one-item": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do:
              - sms: {text: hi}
                email: {subject: a, body: b}
        """,
        [
            "rules/r.yaml:5:9: action needs exactly one of: task, sms, email, cancel, complete, "
            "set, emit; found sms, email; put each action in its own '-' item (rule r)"
        ],
    ),
    "wrong-type": (
        """
        rules:
          - id: r
            enabled: "no"
            when: {event: sale.delivered}
            do: [{sms: {text: [hi]}}]
        """,
        [
            "rules/r.yaml:3:14: enabled must be true or false; got 'no' (rule r)",
            "rules/r.yaml:5:23: sms.text must be text; got a list (rule r)",
        ],
    ),
    "bad-rule-id": (
        """
        rules:
          - id: Sales_Callback
            when: {event: sale.delivered}
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:2:9: id must be lowercase letters, digits and '-', starting with a "
            "letter or digit; got 'Sales_Callback' (rule Sales_Callback)"
        ],
    ),
    "duplicate-key": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do: [{sms: {text: hi}}]
            when: {event: member.joined}
        """,
        [
            "rules/r.yaml:5:5: duplicate key 'when' (first on line 3); YAML would keep only "
            "the last one: remove or merge them (rule r)"
        ],
    ),
    "yaml-syntax": (
        """
        rules:
          - id: r
            when: {event: sale.delivered
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:4:7: YAML syntax error: expected ',' or '}', but got ':' "
            "(while parsing a flow mapping on line 3)"
        ],
    ),
    "unknown-event-type": (
        """
        rules:
          - id: r
            when: {event: [sale.delivered, service.complete]}
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:3:36: unknown event type 'service.complete'; did you mean "
            "'service.completed'? (a site adds its own under event_types: in site.yaml) (rule r)"
        ],
    ),
    "unknown-role": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do:
              - task: {role: sales_calback, title: 回访}
        """,
        [
            "rules/r.yaml:5:22: unknown role 'sales_calback'; did you mean 'sales_callback'? "
            "(roles are listed under roles: in site.yaml) (rule r)"
        ],
    ),
    "bad-offsets": (
        """
        rules:
          - id: r
            when: {event: sale.delivered, after: 3 dayz}
            backfill: forever
            do:
              - task: {role: sales, title: a, due: two days}
              - task: {role: sales, title: b, due: {after: -1 days}}
        """,
        [
            "rules/r.yaml:3:42: '3 dayz' is not a duration: write a whole number and a unit,",
            "rules/r.yaml:4:15: 'forever' is not a duration: write a whole number and a unit,",
            "rules/r.yaml:6:44: 'two days' is not a duration: write a whole number and a unit,",
            "rules/r.yaml:7:52: '-1 days' is not a duration: durations count forward,",
        ],
    ),
    "at-with-an-hours-offset": (
        """
        rules:
          - id: r
            when: {event: sale.delivered, after: 2 hours, at: "09:00"}
            do:
              - task: {role: sales, title: a, due: {after: 90 minutes, at: "18:00"}}
        """,
        [
            "rules/r.yaml:3:55: at needs an after in days, weeks, months or working days; "
            "'after: 2 hours' already gives the exact time, so remove at (rule r)",
            "rules/r.yaml:5:68: at needs an after in days, weeks, months or working days; "
            "'after: 90 minutes' already gives the exact time, so remove at (rule r)",
        ],
    ),
    "bad-time-of-day": (
        """
        rules:
          - id: r
            when: {event: sale.delivered, after: 1 day, at: "25:00"}
            do: [{sms: {text: hi}}]
        """,
        ["rules/r.yaml:3:53: '25:00' is not a time of day: write HH:MM, like '09:30' (rule r)"],
    ),
    "bad-schedules": (
        """
        rules:
          - id: a
            when: {cron: "61 9 * * *"}
            do: [{sms: {text: hi}}]
          - id: b
            when: {weekly: funday, at: "12:00"}
            do: [{sms: {text: hi}}]
          - id: c
            when: {monthly: 0, at: "09:00"}
            do: [{sms: {text: hi}}]
          - id: d
            when: {monthly: [15, 32]}
            do: [{sms: {text: hi}}]
          - id: e
            when: {monthly: 1, shift: sideways}
            do: [{sms: {text: hi}}]
          - id: f
            when: {daily: "9:00", days: weekends}
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:3:18: '61 9 * * *' is not a cron expression:",
            "rules/r.yaml:6:20: 'funday' is not a day of the week:",
            "rules/r.yaml:9:21: 0 is not a day of the month:",
            "rules/r.yaml:12:26: 32 is not a day of the month:",
            "rules/r.yaml:15:31: 'sideways' is not a shift:",
            "rules/r.yaml:18:33: 'weekends' is not a choice of days:",
        ],
    ),
    "count-and-per": (
        """
        rules:
          - id: r
            when: {event: task.attempted, count: 0, per: car}
            do: [{sms: {text: hi}}]
          - id: s
            when: {event: sale.delivered, per: vehicle}
            do: [{sms: {text: hi}}]
          - id: t
            when: {event: sale.delivered, count: 2, per: task, after: 1 day}
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:3:42: when.count must be at least 1 (rule r)",
            "rules/r.yaml:3:50: when.per must be one of: customer, vehicle, task; got 'car' "
            "(rule r)",
            "rules/r.yaml:6:35: per only applies with count (rule s)",
            "rules/r.yaml:9:50: per: task needs task.* events (rule t)",
            "rules/r.yaml:9:56: after does not apply with count: a counting rule fires at the "
            "time of the count-th event (rule t)",
        ],
    ),
    "bad-where": (
        """
        rules:
          - id: r
            when: {event: task.attempted}
            where:
              outcome: powered_off
              event.score: {lessthan: 7}
              event.outcome: {in: powered_off}
              customer.email:
            do: [{sms: {text: hi}}]
          - id: s
            when: {daily: "09:00"}
            where: {customer.member: true}
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:5:7: where field 'outcome' must start with event., customer. or "
            "vehicle., like customer.member (rule r)",
            "rules/r.yaml:6:21: unknown operator 'lessthan' in where; expected one of: not, in, "
            "not_in, lt, lte, gt, gte, exists (rule r)",
            "rules/r.yaml:7:27: in takes a list, like {in: [a, b]} (rule r)",
            "rules/r.yaml:8:7: give a value to compare with, or use {exists: false} (rule r)",
            "rules/r.yaml:12:5: where does not apply to a schedule rule: a schedule fire has no "
            "customer, vehicle or event (with for_each: customer, it may test customer fields) "
            "(rule s)",
        ],
    ),
    "bad-unless": (
        """
        rules:
          - id: r
            when: {event: sale.delivered, after: 3 days}
            unless: [customer.opted_ot]
            do: [{sms: {text: hi}}]
          - id: s
            when: {monthly: 1}
            unless: [customer.opted_out]
            do: [{task: {role: gm, title: 月报}}]
          - id: t
            when: {event: task.attempted, count: 3}
            unless: {events: [task.done], same: car}
            do: [{sms: {text: hi}}]
          - id: u
            when: {event: task.attempted, count: 3}
            unless: {events: [task.done]}
            do: [{sms: {text: hi}}]
          - id: v
            when: {annually: customer.birthday}
            unless: [customer.opted_out]
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:4:14: unknown event type 'customer.opted_ot'; did you mean "
            "'customer.opted_out'? (a site adds its own under event_types: in site.yaml) "
            "(rule r)",
            "rules/r.yaml:8:5: unless applies to event rules only: a schedule rule has no "
            "anchoring event (rule s)",
            "rules/r.yaml:12:41: unless.same must be one of: customer, vehicle; got 'car' (rule t)",
            "rules/r.yaml:16:5: unless applies to event rules only: a counting rule fires at "
            "once, so nothing is pending (rule u)",
            "rules/r.yaml:20:5: unless applies to event rules only: an annually rule has no "
            "anchoring event (rule v)",
        ],
    ),
    "cancel-unknown-rule": (
        """
        rules:
          - id: sales-callback
            when: {event: sale.delivered}
            do:
              - cancel: {rules: [sales-callback, sales-calback]}
        """,
        [
            "rules/r.yaml:5:42: cancel names rule 'sales-calback', which is in no rule file; "
            "did you mean 'sales-callback'? (rule sales-callback)"
        ],
    ),
    "bad-annual": (
        """
        rules:
          - id: r
            when: {annually: customer.joined}
            do: [{sms: {text: hi}}]
          - id: s
            when: {annually: customer.birthday, feb29: mar2}
            do: [{sms: {text: hi}}]
          - id: t
            when: {annually: customer.birthday}
            where: {vehicle.model: X5}
            do: [{sms: {text: "{{ vehicle.plate }}"}}]
        """,
        [
            "rules/r.yaml:3:22: annually takes customer.birthday, the only date field in this "
            "version; got 'customer.joined' (rule r)",
            "rules/r.yaml:6:48: when.feb29 must be one of: feb28, mar1; got 'mar2'; did you "
            "mean 'mar1'? (rule s)",
            "rules/r.yaml:10:13: vehicle.model is not available in an annually rule: it fires "
            "for a customer only, with no vehicle (rule t)",
            "rules/r.yaml:11:23: sms.text: vehicle is not available in an annually rule: it "
            "fires for a customer only; use customer, fire and site (rule t)",
        ],
    ),
    "bad-due": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do:
              - task: {role: gm, title: a, due: {day: 0}}
              - task: {role: gm, title: b, due: {day: first}}
          - id: s
            when: {event: sale.delivered}
            do:
              - task: {role: gm, title: c, due: {at: "17:00"}}
              - task: {role: gm, title: d, due: {day: 10, shift: later}}
        """,
        [
            "rules/r.yaml:5:47: due.day must be a day of the month, 1 to 31, or last; got 0 "
            "(rule r)",
            "rules/r.yaml:6:47: due.day must be a day of the month, 1 to 31, or last; got "
            "'first' (rule r)",
            'rules/r.yaml:10:41: due needs either after or day, like {after: 2 days, at: "18:00"}'
            ' or {day: 10, at: "17:00"} (rule s)',
            "rules/r.yaml:11:58: 'later' is not a shift: write 'previous working day' or "
            "'next working day' (rule s)",
        ],
    ),
    "bad-backfill": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            backfill: 10 working days
            do: [{sms: {text: hi}}]
        """,
        [
            "rules/r.yaml:4:15: backfill takes calendar time (minutes, hours, days, weeks or "
            "months), not working days; write e.g. '30 days' (rule r)"
        ],
    ),
    "bad-email-to": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do:
              - email: {subject: a, body: b, to: boss@example.com}
              - email: {subject: a, body: b, to: [boss]}
        """,
        [
            "rules/r.yaml:5:42: email.to must be customer, or a list of e-mail addresses like "
            "[boss@example.com]; got 'boss@example.com' (rule r)",
            "rules/r.yaml:6:43: each item of to must be an e-mail address like "
            "boss@example.com; got 'boss' (rule r)",
        ],
    ),
    "file-not-a-mapping": (
        """
        - id: r
        """,
        ["rules/r.yaml:1:1: the file must be a mapping with a 'rules:' list; got a list"],
    ),
}


@pytest.mark.parametrize(("text", "expected"), BAD.values(), ids=BAD.keys())
def test_mistakes_are_reported_where_they_are(site: Site, text: str, expected: list[str]) -> None:
    write(site, "r.yaml", text)
    found = located(site)
    assert len(found) == len(expected), "\n".join(found)
    for message, start in zip(found, expected, strict=True):
        assert message.startswith(start)


def test_duplicate_ids_across_files_point_at_the_second(site: Site) -> None:
    write(site, "a.yaml", CALLBACKS)
    write(
        site,
        "b.yaml",
        """
        rules:
          - id: birthday
            when: {annually: customer.birthday}
            do: [{sms: {text: 生日快乐}}]
          - id: sales-callback
            when: {event: sale.delivered}
            do: [{sms: {text: hi}}]
        """,
    )
    assert located(site) == [
        "rules/b.yaml:5:9: duplicate rule id 'sales-callback'; it is first defined at "
        "rules/a.yaml:2. Rule ids must be unique across all files (rule sales-callback)"
    ]


def test_errors_in_every_file_are_reported_and_nothing_loads(site: Site) -> None:
    write(site, "good.yaml", CALLBACKS)
    write(
        site,
        "one.yaml",
        """
        rules:
          - id: one
            when: {event: sale.delivered, after: 3 dayz}
            do: [{sms: {text: hi}}]
          - id: two
            when: {event: sale.delivered}
            do: [{task: {role: nobody, title: hi}}]
        """,
    )
    write(site, "zero.yaml", "rules:\n\t- id: tabbed\n")
    with pytest.raises(RuleSetError) as caught:
        load_rules(site)
    where = [(e.file, e.line, e.col, e.rule_id) for e in caught.value.errors]
    assert where == [
        ("rules/one.yaml", 3, 42, "one"),
        ("rules/one.yaml", 7, 24, "two"),
        ("rules/zero.yaml", 2, 1, None),
    ]
    assert "indent with spaces, not tabs" in caught.value.errors[2].message
    # The whole report, one error a line, for `crmd check`.
    assert str(caught.value).count("\n") == 2


def test_a_file_that_is_not_utf8_is_located(site: Site) -> None:
    (site.rules_dir / "latin.yaml").write_bytes(b"rules:\n  - id: caf\xe9\n")
    assert located(site) == ["rules/latin.yaml:2:12: not UTF-8 text: save the file as UTF-8"]


TEMPLATES = {
    "syntax-error-on-the-second-line-of-a-block": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do:
              - sms:
                  text: |
                    {{ customer.name }}您好,
                    感谢您选择 {{ vehicle.model }
        """,
        "rules/r.yaml:8:13: sms.text: template syntax error: unexpected '}' (rule r)",
    ),
    "syntax-error-in-a-flow-string": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do: [{task: {role: gm, title: "{% if customer.member %}会员"}}]
        """,
        "rules/r.yaml:4:35: task.title: template syntax error: Unexpected end of template. "
        "Jinja was looking for the following tags: 'elif' or 'else' or 'endif'. The innermost "
        "block that needs to be closed is 'if'. (rule r)",
    ),
    "unknown-filter": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do: [{sms: {text: "{{ event.at | weekday }}"}}]
        """,
        "rules/r.yaml:4:23: sms.text: template syntax error: No filter named 'weekday'. (rule r)",
    ),
    "undefined-name": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do: [{sms: {text: "{{ custmer.name }}您好"}}]
        """,
        "rules/r.yaml:4:23: sms.text: unknown name 'custmer' in the template; names here: "
        "customer, vehicle, event, fire, site; did you mean 'customer'? (rule r)",
    ),
    "misspelt-field-on-a-later-line": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do:
              - email:
                  subject: 感谢
                  body: |
                    {{ customer.name }}:
                    您的车牌 {{ vehicle.plat }}
        """,
        "rules/r.yaml:9:13: email.body: vehicle.plat: no such field of vehicle; did you mean "
        "'plate'? (rule r)",
    ),
    "schedule-rule-using-customer": (
        """
        rules:
          - id: r
            when: {daily: "09:30", days: working}
            do: [{task: {role: gm, title: "回访 {{ customer.name }}"}}]
        """,
        "rules/r.yaml:4:35: task.title: customer is not available in a schedule rule: a "
        "schedule fire has no customer, vehicle or event; use fire and site (rule r)",
    ),
    "task-outside-task-events": (
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do: [{sms: {text: "{{ task.title }}"}}]
        """,
        "rules/r.yaml:4:23: sms.text: task is not available in a rule for sale.delivered: "
        "task is there only for task.* events (rule r)",
    ),
    "field-of-a-task-event": (
        """
        rules:
          - id: r
            when: {event: task.overdue}
            do: [{task: {role: gm, title: "{{ event.kind }}"}}]
        """,
        "rules/r.yaml:4:35: task.title: event.kind: no such field of task.overdue; its fields: "
        "id, type, at, customer_id, vehicle_id, task_id, rule, role (rule r)",
    ),
}


@pytest.mark.parametrize(("text", "expected"), TEMPLATES.values(), ids=TEMPLATES.keys())
def test_template_mistakes_are_reported_where_they_are(
    site: Site, text: str, expected: str
) -> None:
    write(site, "r.yaml", text)
    assert located(site) == [expected]


def test_templates_may_use_what_their_trigger_provides(site: Site) -> None:
    write(
        site,
        "r.yaml",
        """
        rules:
          - id: delivered
            when: {event: sale.delivered}
            do:
              - sms:
                  text: >-
                    {{ customer.name }} {{ vehicle.plate }} {{ event.mileage }}
                    {{ event.at | datetime }} {{ fire.at | time }} {{ fire.rule }} {{ site.name }}
          - id: attempted
            when: {event: task.attempted, count: 2, per: task}
            do:
              - task:
                  role: cr_specialist
                  title: "{{ task.title }} {{ task.due_at | date }} {{ event.outcome }}"
                  note: "{% for x in [1, 2] %}{{ loop.index }}{{ x }}{% endfor %}"
          - id: report
            when: {cron: "0 9 * * 1"}
            do: [{email: {subject: "{{ site.timezone }}", body: "{{ fire.at | date }}"}}]
        """,
    )
    ruleset = load_rules(site)
    assert [r.id for r in ruleset.rules] == ["delivered", "attempted", "report"]
    # An email without `to` goes to the customer.
    assert ruleset.by_id()["report"].actions[0] == EmailAction(
        Template("{{ site.timezone }}"), Template("{{ fire.at | date }}"), ()
    )


def test_the_sample_context_uses_aware_times_in_the_site_zone(site: Site) -> None:
    event = sample_context(site, "r", "event", ("sale.delivered",))
    assert set(event) == {"customer", "vehicle", "event", "fire", "site"}
    assert event["fire"]["at"].tzinfo is site.timezone
    assert "anything" not in event["event"]  # a sample event has its type's fields only
    assert set(event["event"]) == {
        "id",
        "type",
        "at",
        "customer_id",
        "vehicle_id",
        "kind",
        "mileage",
    }
    assert set(sample_context(site, "r", "annual")) == {"customer", "fire", "site"}
    assert set(sample_context(site, "r", "schedule")) == {"fire", "site"}
    assert "task" in sample_context(site, "r", "event", ("task.done",))


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)
