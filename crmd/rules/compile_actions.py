"""Compiling a rule's actions (`do`) and its templates: the half of RuleCompiler that
checks what a rule does, located at each value in the file. RuleCompiler (crmd.rules.compile_rule)
supplies the shared checks this part calls, declared below.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time
from typing import Any

import jinja2

from crmd.calendar.offsets import Offset
from crmd.calendar.spec_words import Shift, parse_shift
from crmd.errors import RuleError
from crmd.rules.fieldcheck import RuleKind, Sample, template_problem
from crmd.rules.rule import (
    Action,
    CancelAction,
    CompleteAction,
    Due,
    EmailAction,
    EmitAction,
    RoleChoice,
    SetDateAction,
    SmsAction,
    TaskAction,
)
from crmd.rules.schema import did_you_mean, name_of
from crmd.rules.templates import Template
from crmd.rules.yamlpos import JsonPath, YamlSource
from crmd.site import Site


class ActionCompiler:
    """Checks and compiles the actions and templates of one rule (a part of RuleCompiler)."""

    # Set by RuleCompiler.__init__.
    source: YamlSource
    base: JsonPath
    site: Site
    rule_id: str
    rule_ids: set[str]
    errors: list[RuleError]
    kind: RuleKind
    types: tuple[str, ...]
    sample: dict[str, Any]
    samples: tuple[Sample, ...]

    # Shared checks, defined by RuleCompiler.
    def error(self, message: str, *path: str | int, at_key: bool = False) -> None:
        raise NotImplementedError

    def offset(self, value: Any, *path: str | int) -> Offset | None:
        raise NotImplementedError

    def day_offset(self, value: Any, *path: str | int) -> Offset | None:
        raise NotImplementedError

    def time_of_day(self, value: Any, *path: str | int) -> time | None:
        raise NotImplementedError

    def at_needs_days(self, after: Offset | None, at: time | None, *path: str | int) -> None:
        raise NotImplementedError

    def event_types(self, value: str | list[str], *path: str | int) -> tuple[str, ...]:
        raise NotImplementedError

    def field_problem(self, path: Any, what: str) -> str | None:
        raise NotImplementedError

    def action(self, index: int, item: Mapping[str, Any]) -> Action | None:
        ((kind, spec),) = item.items()
        path = ("do", index, kind)
        if kind == "task":
            role = self.role(spec["role"], *path, "role")
            title = self.template(spec["title"], *path, "title")
            note = self.template(spec["note"], *path, "note") if "note" in spec else None
            due = self.due(spec["due"], *path, "due") if "due" in spec else None
            if title is None or role is None:
                return None
            return TaskAction(role, title, due, note)
        if kind == "sms":
            text = self.template(spec["text"], *path, "text")
            return None if text is None else SmsAction(text)
        if kind == "email":
            subject = self.template(spec["subject"], *path, "subject")
            body = self.template(spec["body"], *path, "body")
            to = spec.get("to", "customer")
            if subject is None or body is None:
                return None
            return EmailAction(subject, body, () if to == "customer" else tuple(to))
        if kind == "set":
            return self.set_date(spec, *path)
        if kind == "emit":
            return self.emit(spec, *path)
        for i, rule_id in enumerate(spec["rules"]):
            if rule_id not in self.rule_ids:
                self.error(
                    f"{kind} names rule '{rule_id}', which is in no rule file"
                    + did_you_mean(rule_id, sorted(self.rule_ids)),
                    *path,
                    "rules",
                    i,
                )
        matching = spec.get("matching")
        if matching is not None:
            problem = self.field_problem(matching, "matching")
            if problem:
                self.error(problem, *path, "matching")
        if kind == "complete":
            return CompleteAction(tuple(spec["rules"]), matching)
        return CancelAction(tuple(spec["rules"]), matching)

    def known_role(self, role: str, *path: str | int) -> bool:
        if role in self.site.roles:
            return True
        hint = did_you_mean(role, self.site.roles) or f"; roles: {', '.join(self.site.roles)}"
        self.error(
            f"unknown role '{role}'{hint} (roles are listed under roles: in site.yaml)", *path
        )
        return False

    def role(self, value: str | Mapping[str, Any], *path: str | int) -> str | RoleChoice | None:
        if isinstance(value, str):
            self.known_role(value, *path)
            return value
        ok = True
        problem = self.field_problem(value["by"], "role.by")
        if problem:
            self.error(problem, *path, "by")
            ok = False
        choices: list[tuple[str, str]] = []
        for key, role in value.items():
            if key == "by":
                continue
            if not self.known_role(role, *path, key):
                ok = False
            if key != "default":
                choices.append((str(key), role))
        if not choices:
            self.error(
                "role needs at least one value besides by and default, like "
                "{by: event.department, sales: sales_callback, default: service_callback}",
                *path,
            )
            ok = False
        return RoleChoice(value["by"], tuple(choices), value["default"]) if ok else None

    def set_date(self, spec: Mapping[str, Any], *path: str | int) -> SetDateAction | None:
        field = spec["field"]
        scope, _, name = field.partition(".")
        ok = True
        if scope not in ("vehicle", "customer") or not name:
            self.error(
                f"set field must be vehicle.<name> or customer.<name>, like "
                f"vehicle.next_maintenance; got {field!r}",
                *path,
                "field",
            )
            ok = False
        elif scope not in self.sample:
            self.error(
                f"set {field} needs a rule whose fires have a {scope}, like an event rule; "
                f"this one has none",
                *path,
                "field",
            )
            ok = False
        if "km" in spec and scope != "vehicle":
            self.error("km applies to vehicle dates only", *path, "km", at_key=True)
            ok = False
        after = self.day_offset(spec["after"], *path, "after")
        if not ok or after is None:
            return None
        return SetDateAction(field, after, spec.get("km"))

    def emit(self, spec: Mapping[str, Any], *path: str | int) -> EmitAction | None:
        before = len(self.errors)
        self.event_types(spec["event"], *path, "event")
        ok = len(self.errors) == before
        if spec["event"] in self.types:
            self.error(
                f"emit {spec['event']} from a rule for {spec['event']} would fire itself "
                f"again and again",
                *path,
                "event",
            )
            ok = False
        ok = self.emitted_fields(spec, *path) and ok
        data: list[tuple[str, Template]] = []
        for key, text in spec.get("data", {}).items():
            template = self.template(text, *path, "data", key)
            if template is None:
                ok = False
            else:
                data.append((str(key), template))
        return EmitAction(spec["event"], tuple(data)) if ok else None

    def emitted_fields(self, spec: Mapping[str, Any], *path: str | int) -> bool:
        """An emitted event's data are fields of its type, and give those it requires."""
        if spec["event"] not in self.site.event_types:
            return True  # already an error
        declared = self.site.fields.event_type(spec["event"])
        data = spec.get("data", {})
        ok = True
        for key in data:
            if key not in declared.fields:
                hint = did_you_mean(key, declared.data) or (
                    f"; its fields: {', '.join(declared.data)}" if declared.data else ""
                )
                self.error(
                    f"{spec['event']} has no field '{key}'{hint} (a site declares a type's "
                    f"fields under event_types: in site.yaml)",
                    *path,
                    "data",
                    key,
                    at_key=True,
                )
                ok = False
        # The emitting rule's id is given as `rule` (crmd.engine.actions).
        missing = [f for f in declared.required if f not in data and f != "rule"]
        if missing:
            self.error(
                f"emit {spec['event']} needs data {', '.join(missing)}: its type requires "
                f"{'it' if len(missing) == 1 else 'them'}",
                *path,
                "event",
            )
            ok = False
        return ok

    def due(self, value: str | Mapping[str, Any], *path: str | int) -> Due | None:
        if isinstance(value, str):
            after = self.offset(value, *path)
            return None if after is None else Due(after=after)
        after = self.offset(value["after"], *path, "after") if "after" in value else None
        at = self.time_of_day(value["at"], *path, "at") if "at" in value else None
        self.at_needs_days(after, at, *path, "at")
        if ("after" in value) == ("day" in value):
            self.error(
                'due needs either after or day, like {after: 2 days, at: "18:00"} or '
                '{day: 10, at: "17:00"}',
                *path,
            )
        shift: Shift = "none"
        if "shift" in value:
            try:
                shift = parse_shift(value["shift"])
            except ValueError as exc:
                self.error(str(exc), *path, "shift")
        return Due(after=after, at=at, day=value.get("day"), shift=shift)

    # Templates ----------------------------------------------------------------------------

    def template(self, source: str, *path: str | int) -> Template | None:
        what = name_of((*self.base, *path))
        try:
            template = Template(source)
        except jinja2.TemplateSyntaxError as exc:
            self.template_error(f"{what}: template syntax error: {exc.message}", exc.lineno, path)
            return None
        problem, lineno = template_problem(template, self.samples, self.kind, self.types)
        if problem:
            self.template_error(f"{what}: {problem}", lineno, path)
        return template

    def template_error(self, message: str, lineno: int | None, path: JsonPath) -> None:
        """Add an error at the template's value, or at its line `lineno` if it spans lines."""
        full = (*self.base, *path)
        line, col = self.source.where(full)
        block = full in self.source.blocks  # the text starts on the line after `|`
        if lineno and (lineno > 1 or block):
            line += lineno - (0 if block else 1)
            text = self.source.text.splitlines()[line - 1 : line]
            col = len(text[0]) - len(text[0].lstrip()) + 1 if text else 1
        self.errors.append(RuleError(message, self.source.name, line, col, self.rule_id))
