"""Message and title templates: Jinja2 in a sandbox, strict about undefined names.

Templates are checked once, when rules load, against a sample of what their rule's fires
will give them (`sample_context`), and rendered per fire.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any, Literal

from jinja2 import Environment, StrictUndefined, TemplateError, Undefined, nodes
from jinja2.sandbox import SandboxedEnvironment

from crmd.placeholders import RecordFields
from crmd.rule_schema import did_you_mean
from crmd.site import Site


def _strftime(value: date | datetime | Undefined | None, form: str) -> str:
    if value is None:
        return ""
    if isinstance(value, Undefined):
        return str(value)  # a missing date shows its placeholder (crmd.placeholders)
    return value.strftime(form)


def _date(value: date | datetime | None) -> str:
    return _strftime(value, "%Y-%m-%d")


def _time(value: datetime | None) -> str:
    return _strftime(value, "%H:%M")


def _datetime(value: datetime | None) -> str:
    return _strftime(value, "%Y-%m-%d %H:%M")


_ENV = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)
_ENV.filters.update({"date": _date, "time": _time, "datetime": _datetime})


# A part of a plain template: literal text, or a name and maybe one field of it.
Part = str | tuple[str, str | None]
_MISSING = object()
# Names a dict has as attributes (`items`, `keys`...): Jinja's `x.keys` finds the method.
_DICT_ATTRIBUTES = frozenset(dir(dict))


def _plain_parts(source: str) -> tuple[Part, ...] | None:
    """A template made only of text and `{{ name }}` / `{{ name.field }}`, as its parts;
    None for any other (filters, tests, blocks), which Jinja renders."""
    parts: list[Part] = []
    for node in _ENV.parse(source).body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(child.data)
            elif isinstance(child, nodes.Name) and child.ctx == "load":
                parts.append((child.name, None))
            elif (
                isinstance(child, nodes.Getattr)
                and isinstance(child.node, nodes.Name)
                and child.node.ctx == "load"
            ):
                parts.append((child.node.name, child.attr))
            else:
                return None
    return tuple(parts)


class Template:
    """A compiled template; compiled once at rule load, rendered per fire.

    Most titles and messages are text with a few `{{ customer.name }}` in it: those are
    rendered by joining their parts, each looked up with the sandbox's own getattr and
    undefined (so a missing name fails as in Jinja), without building a Jinja context per
    fire. Text without any lookup is rendered once.
    """

    __slots__ = ("_compiled", "_constant", "_parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        # Raises jinja2.TemplateSyntaxError; the rule loader turns it into a located error.
        self._compiled = _ENV.from_string(source)
        self._parts = _plain_parts(source)
        self._constant: str | None = None
        if self._parts is not None and all(isinstance(p, str) for p in self._parts):
            self._constant = "".join(p for p in self._parts if isinstance(p, str))

    def render(self, context: Mapping[str, Any]) -> str:
        if self._constant is not None:
            return self._constant
        if self._parts is None:
            return self._compiled.render(context)
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, attr = part
            value = context.get(name, _MISSING)
            if value is _MISSING:
                value = _ENV.globals.get(name, _MISSING)
            if value is _MISSING:
                value = _ENV.undefined(name=name)
            if attr is not None:
                if type(value) is RecordFields and attr not in _DICT_ATTRIBUTES:
                    value = value[attr]  # a missing field is a placeholder (crmd.placeholders)
                elif type(value) is dict and attr in value and attr not in _DICT_ATTRIBUTES:
                    # A field of a record: what Jinja finds too, after its attribute lookup
                    # fails (an exception per field, the larger part of a render's cost).
                    value = value[attr]
                else:
                    value = _ENV.getattr(value, attr)
            out.append(str(value))  # as Jinja outputs it; an undefined value raises here
        return "".join(out)

    def lookups(self) -> tuple[tuple[str, str | None], ...] | None:
        """The (name, field) pairs a plain template looks up; None for any other template."""
        if self._parts is None:
            return None
        return tuple(p for p in self._parts if not isinstance(p, str))

    def check(self, context: Mapping[str, Any]) -> str | None:
        """Render against a sample context; return the problem in plain words, or None."""
        try:
            self.render(context)
        except TemplateError as exc:
            return f"template error in {self.source!r}: {exc}"
        except (TypeError, ValueError, AttributeError) as exc:
            return f"template error in {self.source!r}: {exc}"
        return None

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


class EventFields(dict[str, Any]):
    """An event's fields for templates: data is free-form, so a missing field renders empty."""

    def __missing__(self, key: str) -> str:
        return ""


# -- checking templates at rule load against a sample context -----------------------------

# The kinds of rule, by their trigger; each gives its templates different names to use.
RuleKind = Literal["event", "schedule", "annual", "date"]
_PARSER = Environment()  # parses only: the names and fields a template uses
_RECORDS = ("customer", "vehicle", "event", "task")
# The sample value of a date that a `set` action stores (vehicle.next_maintenance).
SAMPLE_SET_DATE = date(2026, 9, 1)


def sample_context(
    site: Site,
    rule_id: str,
    kind: RuleKind,
    event_types: Sequence[str] = (),
    *,
    for_each: bool = False,
    vehicle: bool = True,
    set_fields: Iterable[str] = (),
) -> dict[str, Any]:
    """The names a template of this kind of rule may use, with sample values (docs/rules.md).

    `for_each` is a rule fanned out to every customer (it has a customer but no vehicle);
    `vehicle` says whether a date rule watches a vehicle date; `set_fields` are the fields
    the rule set's `set` actions store (`vehicle.next_maintenance`), present on every record.
    """
    tz = site.timezone
    fire_at = datetime(2026, 3, 2, 9, 30, tzinfo=tz)
    context: dict[str, Any] = {}
    if kind in ("event", "annual", "date") or for_each:
        context["customer"] = {
            "id": 1, "name": "张三", "phone": "+8613800138000",
            "email": "zhangsan@example.com", "birthday": date(1988, 6, 15),
            "member": True, "opt_out": False, "attributes": {},
        }  # fmt: skip
    if (kind == "event" and not for_each) or (kind == "date" and vehicle):
        context["vehicle"] = {
            "id": 1, "customer_id": 1, "vin": "LSGJA52U7EH000001", "plate": "沪A12345",
            "model": "Model", "attributes": {},
        }  # fmt: skip
    for set_field in set_fields:
        scope, _, name = set_field.partition(".")
        if scope in context and name:
            context[scope].setdefault(name, SAMPLE_SET_DATE)
    if kind == "event":
        event: dict[str, Any] = {"id": 1, "type": event_types[0], "at": fire_at - timedelta(days=3)}
        tasks = [t.startswith("task.") for t in event_types]
        if any(tasks):
            event.update(
                task_id=1, rule="sample-rule", role="cr_specialist", outcome="no_answer",
                score=8, note="",
            )  # fmt: skip
            context["task"] = {
                "id": 1, "title": "回访", "role": "cr_specialist", "rule": "sample-rule",
                "due_at": fire_at + timedelta(days=1),
            }  # fmt: skip
        context["event"] = event if all(tasks) else EventFields(event)
    context["fire"] = {"at": fire_at, "rule": rule_id}
    context["site"] = {"name": site.name, "timezone": tz.key}
    return context


def template_problem(
    template: Template, sample: Mapping[str, Any], kind: RuleKind, event_types: Sequence[str]
) -> tuple[str | None, int | None]:
    """Check a template against its rule's sample context: the problem and its line, if any.

    Unknown names and fields are looked for before rendering, so that the message can say
    which names and fields this kind of rule does have.
    """
    tree = _PARSER.parse(template.source)
    names = list(tree.find_all(nodes.Name))
    known = {n.name for n in names if n.ctx != "load"} | {"loop", *_PARSER.globals, *sample}
    for node in names:
        if node.name in known:
            continue
        if node.name in _RECORDS:
            why = _why_not(kind, event_types, sample)
            return f"{node.name} is not available in {why}", node.lineno
        return (
            f"unknown name '{node.name}' in the template; names here: "
            f"{', '.join(sample)}{did_you_mean(node.name, list(sample))}",
            node.lineno,
        )
    for attr in tree.find_all(nodes.Getattr):
        if isinstance(attr.node, nodes.Name) and attr.node.name in sample:
            record = sample[attr.node.name]
            # Event data is free-form (EventFields); the other records have fixed fields.
            if type(record) is dict and attr.attr not in record:
                return (
                    f"{attr.node.name} has no field '{attr.attr}'; fields: "
                    f"{', '.join(record)}{did_you_mean(attr.attr, list(record))}",
                    attr.lineno,
                )
    return template.check(sample), None


def _why_not(kind: RuleKind, event_types: Sequence[str], sample: Mapping[str, Any]) -> str:
    if kind == "schedule" and "customer" in sample:
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
        names = ", ".join(n for n in ("customer", "vehicle") if n in sample)
        return f"a date rule: it has no event; use {names}, fire and site"
    if "vehicle" not in sample:
        return (
            f"a rule for {', '.join(event_types)} for each customer: it has no vehicle, and "
            f"task is there only for task.* events"
        )
    return f"a rule for {', '.join(event_types)}: task is there only for task.* events"
