"""crmd check: misspelt fields are errors, templates are rendered on a sample of every event
type they receive, and a template that raises or runs away is a located error (issue 14)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from crmd.cli.commands import main
from crmd.errors import ConfigError, RuleSetError
from crmd.rules.ruleset import load_rules
from crmd.site import Site, load_site


def site_with(tmp_path: Path, rules: str, settings: str = "") -> Site:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.yaml").write_text(
        textwrap.dedent(rules).lstrip("\n"), encoding="utf-8"
    )
    (tmp_path / "site.yaml").write_text(textwrap.dedent(settings), encoding="utf-8")
    return load_site(tmp_path)


def located(site: Site) -> list[str]:
    with pytest.raises(RuleSetError) as caught:
        load_rules(site)
    return [str(e) for e in caught.value.errors]


P4 = """
rules:
  - id: unreachable-to-sales
    when: {event: task.attempted, count: 3, per: task}
    where:
      event.outcme: [powered_off, forwarded, unreachable]
    do:
      - task: {role: sales, title: "核实 {{ customer.name }}"}
"""


def test_a_misspelt_where_field_is_an_error_with_a_guess(tmp_path: Path) -> None:
    assert located(site_with(tmp_path, P4)) == [
        "rules/r.yaml:5:7: event.outcme: no such field of task.attempted; did you mean "
        "'outcome'? (rule unreachable-to-sales)"
    ]
    # Spelt right, the same rule loads.
    site = site_with(tmp_path, P4.replace("outcme", "outcome"))
    assert [r.id for r in load_rules(site).rules] == ["unreachable-to-sales"]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        (
            """
            when: {event: weather.alert, for_each: customer}
            do: [{sms: {text: "明日{{ event.knid }},请注意行车安全"}}]
            """,
            "rules/r.yaml:4:23: sms.text: event.knid: no such field of weather.alert; did you "
            "mean 'kind'?",
        ),
        (
            """
            when: {event: sale.delivered}
            do: [{sms: {text: "{{ customer.nmae }}您好"}}]
            """,
            "rules/r.yaml:4:23: sms.text: customer.nmae: no such field of customer; did you "
            "mean 'name'?",
        ),
        (  # a filter or a subscript does not hide the field
            """
            when: {event: sale.delivered}
            do: [{sms: {text: "{{ vehicle['plat'] | upper }}"}}]
            """,
            "rules/r.yaml:4:23: sms.text: vehicle.plat: no such field of vehicle; did you "
            "mean 'plate'?",
        ),
        (
            """
            when: {event: task.overdue}
            do: [{task: {role: gm, title: "{{ task.titel }}"}}]
            """,
            "rules/r.yaml:4:35: task.title: task.titel: no such field of task; did you mean "
            "'title'?",
        ),
        (
            """
            when: {event: complaint.assigned}
            do:
              - task:
                  role: {by: event.departmnt, sales: sales_manager, default: service_manager}
                  title: 处理投诉
            """,
            "rules/r.yaml:6:22: event.departmnt: no such field of complaint.assigned; did you "
            "mean 'department'?",
        ),
        (
            """
            when: {event: report.submitted}
            do: [{complete: {rules: [r], matching: event.reprt}}]
            """,
            "rules/r.yaml:4:44: event.reprt: no such field of report.submitted; did you mean "
            "'report'?",
        ),
    ],
    ids=["template-event", "template-customer", "subscript", "task", "role-by", "matching"],
)
def test_misspelt_fields_anywhere_are_located(tmp_path: Path, rule: str, expected: str) -> None:
    text = "rules:\n  - id: r\n" + textwrap.indent(textwrap.dedent(rule).strip("\n"), "    ")
    assert located(site_with(tmp_path, text)) == [f"{expected} (rule r)"]


def test_a_template_must_fit_every_event_type_of_its_rule(tmp_path: Path) -> None:
    rules = """
    rules:
      - id: r
        when: {event: [complaint.reopened, complaint.resolved]}
        do: [{task: {role: cr_manager, title: "投诉 {{ event.reason }}"}}]
    """
    # complaint.reopened carries a reason; complaint.resolved does not.
    assert located(site_with(tmp_path, rules)) == [
        "rules/r.yaml:4:43: task.title: event.reason: no such field of complaint.resolved; "
        "its fields: id, type, at, customer_id, vehicle_id, department, summary (rule r)"
    ]


SITE_TYPES = """
event_types:
  complaint.escalated: {fields: [level], required: [reason]}
  sale.delivered: {fields: [salesperson]}
customer_fields: [grade]
vehicle_fields: [colour]
"""


def test_a_site_declares_its_types_and_extra_fields(tmp_path: Path) -> None:
    rules = """
    rules:
      - id: escalated
        when: {event: complaint.escalated}
        where: {event.level: high, customer.grade: gold}
        do: [{task: {role: gm, title: "{{ event.reason }} {{ event.level }} {{ vehicle.colour }}"}}]
      - id: delivered
        when: {event: sale.delivered}
        do: [{task: {role: sales, title: "{{ event.salesperson }} {{ event.mileage }}"}}]
    """
    site = site_with(tmp_path, rules, SITE_TYPES)
    assert [r.id for r in load_rules(site).rules] == ["escalated", "delivered"]
    escalated = site.fields.event_type("complaint.escalated")
    assert (escalated.data, escalated.required) == (("level", "reason"), ("reason",))
    # Without the declarations, the type is unknown and every one of those fields an error.
    assert "unknown event type 'complaint.escalated'" in located(site_with(tmp_path, rules))[0]
    no_fields = site_with(tmp_path, rules, "event_types: [complaint.escalated]\n")
    assert [e.split(": ", 1)[1].split(";")[0] for e in located(no_fields)] == [
        "event.level: no such field of complaint.escalated",
        "customer.grade: no such field of customer",
        "task.title: event.reason: no such field of complaint.escalated",
        "task.title: event.salesperson: no such field of sale.delivered",
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ("event_types: {a.b: [x]}\n", "event_types: a.b takes only fields and required"),
        ("event_types: {a.b: {fields: x}}\n", "event_types: a.b: fields must be a list"),
        ("event_types: {a.b: {fields: [first-name]}}\n", "'first-name' is not a field name"),
        ("event_types: 7\n", "event_types must be a list of names, or a mapping"),
        ("customer_fields: grade\n", "customer_fields must be a list of names"),
    ],
)
def test_bad_declarations_are_refused(tmp_path: Path, settings: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        site_with(tmp_path, "rules: []\n", settings)


def test_an_emit_gives_fields_of_its_type_and_those_it_requires(tmp_path: Path) -> None:
    rules = """
    rules:
      - id: r
        when: {event: task.attempted}
        do: [{emit: {event: complaint.reopened, data: {resaon: "评分 {{ event.score }}"}}}]
    """
    assert located(site_with(tmp_path, rules)) == [
        "rules/r.yaml:4:25: emit complaint.reopened needs data reason: its type requires it "
        "(rule r)",
        "rules/r.yaml:4:52: complaint.reopened has no field 'resaon'; did you mean 'reason'? "
        "(a site declares a type's fields under event_types: in site.yaml) (rule r)",
    ]


RUNAWAY = {
    "division": ("{{ 1 // 0 }}", "ZeroDivisionError: integer division or modulo by zero"),
    "range": (
        "{% for i in range(10**8) %}{% endfor %}",
        "SecurityError: range() is given 100000000: numbers above 100000 are refused",
    ),
    "power": ("{{ 10 ** 100000 }}", "SecurityError: 10 ** 100000 is too large a number"),
    "repeat": ("{{ 'x' * 10000000 }}", "SecurityError: a repetition of 10000000 items"),
    "filter": ("{{ 'x' | center(1000000000) }}", "SecurityError: center() is given 1000000000"),
    "format": ("{{ '%0999999999d' % 1 }}", "SecurityError: the format '%0999999999d' is too wide"),
    "loops": (
        "{% for i in range(90000) %}{% for j in range(90000) %}{% endfor %}{% endfor %}",
        "TemplateTimeout: rendering took more than 1 s",
    ),
    "later-line": ("第一行\n{{ customer.name }}\n{{ [] | first | upper }}", "UndefinedError"),
}


@pytest.mark.parametrize(("template", "message"), RUNAWAY.values(), ids=RUNAWAY.keys())
def test_a_template_that_raises_or_runs_away_is_a_located_error(
    tmp_path: Path, template: str, message: str
) -> None:
    body = textwrap.indent(template, " " * 12)
    rules = "rules:\n  - id: r\n    when: {event: sale.delivered}\n    do:\n      - email:\n"
    rules += f"          subject: 您好\n          body: |\n{body}\n"
    started = time.monotonic()
    (error,) = located(site_with(tmp_path, rules))
    assert time.monotonic() - started < 10
    line = 8 + template.count("\n")  # the template's last line, where each one fails
    assert error.startswith(
        f"rules/r.yaml:{line}:13: email.body: template fails for a sample sale.delivered "
        f"event: {message}"
    ), error


def test_a_template_whose_text_is_too_long_is_an_error(tmp_path: Path) -> None:
    rules = """
    rules:
      - id: r
        when: {event: sale.delivered}
        do: [{sms: {text: "{% for i in range(20) %}{{ 'x' * 9999 }}{% endfor %}"}}]
    """
    assert located(site_with(tmp_path, rules)) == [
        "rules/r.yaml:4:23: sms.text: template renders 199980 characters for a sample "
        "sale.delivered event; at most 100000 make sense (rule r)"
    ]


def test_nothing_of_a_template_runs_while_it_compiles(tmp_path: Path) -> None:
    # Never rendered (so never checked by a render), but Jinja used to work the constant
    # out while compiling: a gigabyte of spaces, at every load of the rules.
    rules = """
    rules:
      - id: r
        when: {event: sale.delivered}
        do: [{sms: {text: "{% if false %}{{ 'x' | center(1000000000) }}{% endif %}您好"}}]
    """
    started = time.monotonic()
    rule = load_rules(site_with(tmp_path, rules)).by_id()["r"]
    assert time.monotonic() - started < 2
    assert rule.actions[0].text.render({}) == "您好"  # type: ignore[attr-defined]


def test_check_and_reload_report_a_raising_template_without_a_traceback(tmp_path: Path) -> None:
    site = site_with(
        tmp_path,
        """
        rules:
          - id: r
            when: {event: sale.delivered}
            do: [{sms: {text: "{{ 1 // 0 }}"}}]
        """,
    )
    for command in ("check", "reload"):
        result = CliRunner().invoke(main, ["--site", str(site.root), command])
        assert result.exit_code == 1, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "rules/r.yaml:4:23: sms.text: template fails" in result.output
        assert "ZeroDivisionError" in result.output
        assert "Traceback" not in result.output


def test_the_shipped_rules_pass_with_the_declared_fields() -> None:
    site = load_site(Path(__file__).parent.parent)
    assert len(load_rules(site).rules) == 49


def test_a_check_that_raises_is_the_rule_s_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault injected into crmd's own checking (no rule text is known to cause one now).
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unexpected")

    monkeypatch.setattr("crmd.rules.compile_rule.schedule_from_spec", broken)
    site = site_with(
        tmp_path,
        """
        rules:
          - id: r
            when: {daily: "09:00"}
            do: [{task: {role: gm, title: 看板}}]
        """,
    )
    assert located(site) == [
        "rules/r.yaml:2:9: crmd could not check this rule (RuntimeError: unexpected); change "
        "the rule, and report the rule to crmd's maintainers: the check should have said what "
        "is wrong (rule r)"
    ]
