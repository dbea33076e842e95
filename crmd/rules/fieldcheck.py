"""What `crmd check` (and reload) asks of a rule's fields and templates, beyond the schema.

A field a rule names must be one its fires have (crmd.fields declares them): a misspelt
`event.outcme` in `where` would never hold and silently disable P4, a `{{ event.knid }}`
would send a broken text. Each template is then rendered against a sample of every event
type the rule receives, in a sandbox that bounds its work (crmd.rules.sandbox), and whatever that
raises becomes a located error instead of a traceback or a dead daemon (issue 14, 3 and 7b).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from jinja2 import StrictUndefined

from crmd.rules.placeholders import RECORDS
from crmd.rules.sandbox import CheckSandbox, bounded_time
from crmd.rules.schema import did_you_mean
from crmd.rules.templates import FILTERS, Template, template_references
from crmd.site import Site

# The kinds of rule, by their trigger; each gives its templates different names to use.
RuleKind = Literal["event", "schedule", "annual", "date"]
# The sample value of a date that a `set` action stores (vehicle.next_maintenance).
SAMPLE_SET_DATE = date(2026, 9, 1)
# The longest text a sample render may give (a title or an SMS is a line or two).
MAX_OUTPUT = 100_000
# Plausible values of fields, by name; any other field's sample is a short text.
_SAMPLE_VALUES: dict[str, Any] = {
    "id": 1, "name": "张三", "phone": "+8613800138000", "email": "zhangsan@example.com",
    "birthday": date(1988, 6, 15), "member": True, "opt_out": False, "attributes": {},
    "customer_id": 1, "vehicle_id": 1, "vin": "LSGJA52U7EH000001", "plate": "沪A12345",
    "model": "Model", "task_id": 1, "rule": "sample-rule", "role": "cr_specialist",
    "outcome": "no_answer", "score": 8, "note": "", "kind": "maintenance", "mileage": 12000,
    "severity": "minor", "department": "service", "summary": "示例", "reason": "示例",
    "report": "sample-rule", "period": "2026-02", "title": "回访",
}  # fmt: skip

_CHECK = CheckSandbox(undefined=StrictUndefined, autoescape=False)
_CHECK.add_filters(FILTERS)


@dataclass(frozen=True)
class Sample:
    """What a template of a rule sees in one kind of fire: `label` names the event type
    (None for a rule without events), `context` the names and their sample fields."""

    label: str | None
    context: dict[str, Any]


def _sample_record(names: Iterable[str], at: datetime) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for name in names:
        if name in ("created_at", "updated_at", "at", "due_at"):
            record[name] = at
        else:
            record[name] = _SAMPLE_VALUES.get(name, f"<{name}>")
    return record


def sample_context(
    site: Site,
    rule_id: str,
    kind: RuleKind,
    event_types: Sequence[str] = (),
    *,
    for_each: bool = False,
    vehicle: bool = True,
    set_fields: Iterable[str] = (),
    event_type: str | None = None,
) -> dict[str, Any]:
    """The names a template of this kind of rule may use, with sample values (docs/rules.md).

    `for_each` is a rule fanned out to every customer (it has a customer but no vehicle);
    `vehicle` says whether a date rule watches a vehicle date; `set_fields` are the fields
    the rule set's `set` actions store (`vehicle.next_maintenance`), present on every record;
    `event_type` is the type of the sample event (the first of `event_types` by default).
    """
    tz = site.timezone
    fire_at = datetime(2026, 3, 2, 9, 30, tzinfo=tz)
    stored: dict[str, list[str]] = {"customer": [], "vehicle": []}
    for set_field in set_fields:
        scope, _, name = set_field.partition(".")
        if scope in stored and name:
            stored[scope].append(name)
    context: dict[str, Any] = {}
    if kind in ("event", "annual", "date") or for_each:
        context["customer"] = _sample_record(site.fields.customer(stored["customer"]), fire_at)
    if (kind == "event" and not for_each) or (kind == "date" and vehicle):
        context["vehicle"] = _sample_record(site.fields.vehicle(stored["vehicle"]), fire_at)
    for scope in ("customer", "vehicle"):
        for name in stored[scope] if scope in context else ():
            context[scope][name] = SAMPLE_SET_DATE
    if kind == "event":
        name = event_type or event_types[0]
        event = _sample_record(site.fields.event_type(name).fields, fire_at - timedelta(days=3))
        event["type"] = name
        if name.startswith("task."):
            context["task"] = _sample_record(("id", "title", "role", "rule", "due_at"), fire_at)
            context["task"]["due_at"] = fire_at + timedelta(days=1)
        context["event"] = event
    context["fire"] = {"at": fire_at, "rule": rule_id}
    context["site"] = {"name": site.name, "timezone": tz.key}
    return context


def samples(
    site: Site,
    rule_id: str,
    kind: RuleKind,
    event_types: Sequence[str],
    *,
    for_each: bool = False,
    vehicle: bool = True,
    set_fields: Iterable[str] = (),
) -> tuple[Sample, ...]:
    """A sample per event type the rule receives; one sample for a rule without events."""
    options: dict[str, Any] = {"for_each": for_each, "vehicle": vehicle, "set_fields": set_fields}
    if kind != "event":
        return (Sample(None, sample_context(site, rule_id, kind, **options)),)
    return tuple(
        Sample(t, sample_context(site, rule_id, kind, event_types, event_type=t, **options))
        for t in dict.fromkeys(event_types)
    )


def unknown_field(scope: str, name: str, rule_samples: Sequence[Sample]) -> str | None:
    """Why `scope.name` is no field of some sample's record, or None if every one has it."""
    for sample in rule_samples:
        record = sample.context.get(scope)
        if isinstance(record, dict) and name not in record:
            of = sample.label if scope == "event" and sample.label else scope
            fields = [f for f in record if f != "attributes"]
            hint = did_you_mean(name, fields) or f"; its fields: {', '.join(fields)}"
            return f"{scope}.{name}: no such field of {of}{hint}"
    return None


def template_problem(
    template: Template, rule_samples: Sequence[Sample], kind: RuleKind, event_types: Sequence[str]
) -> tuple[str | None, int | None]:
    """The first problem of a template in any of its rule's samples, and its line.

    Unknown names and fields are looked for before rendering, so that the message can say
    which names and fields this kind of rule does have; the render then finds what only
    running the template shows (a division by zero, a loop too long, a filter's error).
    """
    references = template_references(template)
    for sample in rule_samples:
        names = sample.context
        for name, attr, line in references:
            if name not in names and name in RECORDS:
                why = _why_not(kind, event_types, names)
                return f"{name} is not available in {why}", line
            if name not in names and name not in _CHECK.globals:
                return (
                    f"unknown name '{name}' in the template; names here: "
                    f"{', '.join(names)}{did_you_mean(name, list(names))}",
                    line,
                )
            if attr is not None and name in names:
                problem = unknown_field(name, attr, (sample,))
                if problem:
                    return problem, line
    for sample in rule_samples:
        problem, lineno = render_problem(template.source, sample)
        if problem:
            return problem, lineno
    return None, None


def render_problem(source: str, sample: Sample) -> tuple[str | None, int | None]:
    """Render a template's source against a sample, its work bounded; what failed, if so.

    Any exception is caught: a template is the manager's text, and whatever it does wrong
    must be a located error, never a traceback (`crmd check`) or a dead daemon (reload).
    """
    on = f" for a sample {sample.label} event" if sample.label else ""
    try:
        with bounded_time():
            out = _CHECK.from_string(source).render(sample.context)
    except Exception as exc:  # every failure becomes a located error
        return f"template fails{on}: {type(exc).__name__}: {exc}", _template_line(exc)
    if len(out) > MAX_OUTPUT:
        return f"template renders {len(out)} characters{on}; at most {MAX_OUTPUT} make sense", None
    return None, None


def _template_line(exc: BaseException) -> int | None:
    """The template line the exception was raised on (Jinja rewrites its frames to them)."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    return line


def _why_not(kind: RuleKind, event_types: Sequence[str], names: Mapping[str, Any]) -> str:
    if kind == "schedule" and "customer" in names:
        return (
            "a schedule rule for each customer: it has a customer but no vehicle or event; "
            "use customer, fire and site"
        )
    if kind == "schedule":
        return (
            "a schedule rule: a schedule fire has no customer, vehicle or event; use fire and site"
        )
    if kind == "annual":
        return "an annually rule: it fires for a customer only; use customer, fire and site"
    if kind == "date":
        shown = ", ".join(n for n in ("customer", "vehicle") if n in names)
        return f"a date rule: it has no event; use {shown}, fire and site"
    if "vehicle" not in names:
        return (
            f"a rule for {', '.join(event_types)} for each customer: it has no vehicle, and "
            f"task is there only for task.* events"
        )
    return f"a rule for {', '.join(event_types)}: task is there only for task.* events"
