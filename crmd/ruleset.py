"""Rule files: read with positions, checked whole, compiled into one immutable RuleSet.

All files load together or not at all: every problem in every file is collected and raised
as one RuleSetError, each located as `file:line:col`. Loading is pure (no store, no clock),
so `crmd check`, daemon start and reload run the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.nodes
import yaml

from crmd.conditions import OPERATORS, SCOPES, Condition, compile_matcher
from crmd.errors import RuleError, RuleSetError
from crmd.offsets import Offset, parse_offset, parse_time_of_day
from crmd.rule import (
    Action,
    AnnualTrigger,
    Backfill,
    CancelAction,
    Due,
    EmailAction,
    EventTrigger,
    Rule,
    RuleSet,
    ScheduleTrigger,
    SmsAction,
    TaskAction,
    Trigger,
    Unless,
)
from crmd.rule_schema import JsonPath, did_you_mean, name_of, schema_problems
from crmd.schedule_spec import SCHEDULE_KEYS, ScheduleSpecError, parse_shift, schedule_from_spec
from crmd.schedules import Shift
from crmd.site import Site
from crmd.templates import EventFields, Template

__all__ = ["check_summary", "load_rule_files", "load_rules", "sample_context"]

Kind = Literal["event", "schedule", "annual"]
_YAML_HINTS = {
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
    "mapping values are not allowed here": "check the indentation, and quote text that "
    "contains ': '",
    "could not find expected ':'": "check the indentation and the ':' after each key",
}


def load_rules(site: Site) -> RuleSet:
    """Load every `*.yaml` file in the site's rules directory, in name order."""
    if not site.rules_dir.is_dir():
        raise RuleSetError(
            [RuleError(f"no rules directory at {site.rules_dir}: put the rule files there")]
        )
    return load_rule_files(sorted(site.rules_dir.glob("*.yaml"), key=lambda p: p.name), site)


def load_rule_files(paths: Sequence[Path], site: Site) -> RuleSet:
    """Load these rule files as one set; raise RuleSetError listing every problem."""
    errors: list[RuleError] = []
    sources = [_read(path, _display_name(path, site), errors) for path in paths]
    first_seen: dict[str, str] = {}  # rule id -> "file:line" where it is first defined
    to_build: list[tuple[_Source, int, dict[str, Any]]] = []
    for source in sources:
        if source.failed:
            continue
        broken = _schema_errors(source, errors)
        for index, raw in enumerate(source.rules()):
            rule_id = raw.get("id") if isinstance(raw, dict) else None
            if not isinstance(rule_id, str):
                continue
            path: JsonPath = ("rules", index, "id")
            if rule_id in first_seen:
                errors.append(
                    source.error(
                        f"duplicate rule id '{rule_id}'; it is first defined at "
                        f"{first_seen[rule_id]}. Rule ids must be unique across all files",
                        path,
                        rule_id=rule_id,
                    )
                )
            else:
                first_seen[rule_id] = f"{source.name}:{source.where(path)[0]}"
            if index not in broken:
                to_build.append((source, index, raw))
    rules: list[Rule] = []
    for source, index, raw in to_build:
        rule = _RuleBuilder(source, index, raw, site, set(first_seen), errors).build()
        if rule is not None:
            rules.append(rule)
    if errors:
        errors.sort(key=lambda e: (e.file or "", e.line or 0, e.col or 0))
        raise RuleSetError(errors)
    counts = {source.name: 0 for source in sources}
    for rule in rules:
        counts[rule.file] += 1
    return RuleSet(rules=tuple(rules), files=counts)


def check_summary(ruleset: RuleSet) -> list[tuple[str, int]]:
    """Each loaded file with its number of rules, in load order, for `crmd check`."""
    return list(ruleset.files.items())


# --- Reading YAML with positions ---------------------------------------------------------


@dataclass
class _Source:
    """One rule file as read: its data and the 1-based (line, col) where each part starts."""

    name: str
    text: str = ""
    data: Any = None
    failed: bool = False
    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    blocks: set[JsonPath] = field(default_factory=set)  # `|` and `>` scalars
    duplicates: list[tuple[JsonPath, tuple[int, int], str]] = field(default_factory=list)

    def rules(self) -> list[Any]:
        rules = self.data.get("rules") if isinstance(self.data, dict) else None
        return rules if isinstance(rules, list) else []

    def where(self, path: JsonPath, at_key: bool = False) -> tuple[int, int]:
        """Where the value at `path` starts (or its key), else its deepest known parent."""
        if at_key and path in self.keys:
            return self.keys[path]
        while path and path not in self.values:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def error(
        self, message: str, path: JsonPath, *, at_key: bool = False, rule_id: str | None = None
    ) -> RuleError:
        line, col = self.where(path, at_key)
        return RuleError(message, self.name, line, col, rule_id)

    def rule_id_at(self, path: JsonPath) -> str | None:
        rules = self.rules()
        if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
            raw = rules[path[1]] if path[1] < len(rules) else None
            rule_id = raw.get("id") if isinstance(raw, dict) else None
            return rule_id if isinstance(rule_id, str) else None
        return None


def _mark(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


class _PositionLoader(yaml.SafeLoader):
    """A safe loader that records where every mapping key, value and list item starts.

    Keys are kept as written (`on:` stays "on", not True) and a key repeated in one mapping
    is reported rather than silently overriding the first.
    """

    def __init__(self, source: _Source) -> None:
        super().__init__(source.text)
        self.source = source

    def load_with_positions(self) -> Any:
        node = self.get_single_node()
        return None if node is None else self._value(node, (), frozenset())

    def _value(self, node: yaml.Node, path: JsonPath, active: frozenset[int]) -> Any:
        self.source.values[path] = _mark(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            if node.style in ("|", ">"):
                self.source.blocks.add(path)
            return self.construct_object(node, deep=True)
        if id(node) in active:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to the value that contains it", node.start_mark
            )
        active = active | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, (*path, i), active) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain name", key_node.start_mark
                )
            key = key_node.value
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key in seen:
                self.source.duplicates.append(
                    (
                        (*path, key),
                        _mark(key_node.start_mark),
                        f"duplicate key '{key}' (first on line {seen[key]}); YAML would keep "
                        f"only the last one: remove or merge them",
                    )
                )
            seen.setdefault(key, key_node.start_mark.line + 1)
        self.flatten_mapping(node)  # `<<: *defaults` merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            self.source.keys[(*path, key)] = _mark(key_node.start_mark)
            result[key] = self._value(value_node, (*path, key), active)
            if isinstance(value_node, yaml.ScalarNode) and value_node.value == "":
                # `key:` with nothing after it (or ''): the key is the place to point at.
                self.source.values[(*path, key)] = self.source.keys[(*path, key)]
        return result


def _read(path: Path, name: str, errors: list[RuleError]) -> _Source:
    source = _Source(name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        errors.append(RuleError(f"cannot read the file: {exc.strerror}", name))
        source.failed = True
        return source
    try:
        source.text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - raw.rfind(b"\n", 0, exc.start)
        errors.append(RuleError("not UTF-8 text: save the file as UTF-8", name, line, col))
        source.failed = True
        return source
    loader = _PositionLoader(source)
    try:
        source.data = loader.load_with_positions()
    except yaml.MarkedYAMLError as exc:
        errors.append(_yaml_error(exc, name))
        source.failed = True
    except yaml.reader.ReaderError as exc:
        before = source.text[: exc.position]
        errors.append(
            RuleError(
                f"character {exc.character!r} is not allowed in YAML: remove it",
                name,
                before.count("\n") + 1,
                len(before) - (before.rfind("\n") + 1) + 1,
            )
        )
        source.failed = True
    finally:
        loader.dispose()
    return source


def _yaml_error(exc: yaml.MarkedYAMLError, name: str) -> RuleError:
    problem = exc.problem or exc.context or "not valid YAML"
    message = f"YAML syntax error: {problem}"
    if exc.context and exc.problem and exc.context_mark is not None:
        message += f" ({exc.context} on line {exc.context_mark.line + 1})"
    if problem in _YAML_HINTS:
        message += f"; {_YAML_HINTS[problem]}"
    mark = exc.problem_mark or exc.context_mark
    line, col = _mark(mark) if mark is not None else (None, None)
    return RuleError(message, name, line, col)


def _display_name(path: Path, site: Site) -> str:
    for candidate, root in ((path, site.root), (path.resolve(), site.root.resolve())):
        try:
            return candidate.relative_to(root).as_posix()
        except ValueError:
            continue
    return str(path)


def _schema_errors(source: _Source, errors: list[RuleError]) -> set[int]:
    """Add the file's shape errors; return the indexes of rules too broken to check further."""
    broken: set[int] = set()
    for path, (line, col), message in source.duplicates:
        errors.append(RuleError(message, source.name, line, col, source.rule_id_at(path)))
    if source.data is None:  # an empty file: no rules
        return broken
    for problem in schema_problems(source.data):
        errors.append(
            source.error(
                problem.message,
                problem.path,
                at_key=problem.at_key,
                rule_id=source.rule_id_at(problem.path),
            )
        )
        if len(problem.path) >= 2 and isinstance(problem.path[1], int):
            broken.add(problem.path[1])
    return broken


# --- Meaning: checks beyond the schema, and compiling -----------------------------------


def _kind(when: Mapping[str, Any]) -> Kind:
    if "event" in when:
        return "event"
    return "annual" if "annually" in when else "schedule"


class _RuleBuilder:
    """Check the meaning of one rule whose shape is valid, and compile it."""

    def __init__(
        self,
        source: _Source,
        index: int,
        raw: dict[str, Any],
        site: Site,
        rule_ids: set[str],
        errors: list[RuleError],
    ) -> None:
        self.source = source
        self.base: JsonPath = ("rules", index)
        self.raw = raw
        self.site = site
        self.rule_ids = rule_ids
        self.errors = errors
        self.rule_id: str = raw["id"]
        self.when: dict[str, Any] = raw["when"]
        self.kind = _kind(self.when)
        self.counting = "count" in self.when
        types = self.when.get("event", ())
        self.types: tuple[str, ...] = (types,) if isinstance(types, str) else tuple(types)
        self.sample = sample_context(site, self.rule_id, self.kind, self.types)

    def error(self, message: str, *path: str | int, at_key: bool = False) -> None:
        self.errors.append(
            self.source.error(message, (*self.base, *path), at_key=at_key, rule_id=self.rule_id)
        )

    def build(self) -> Rule | None:
        before = len(self.errors)
        raw = self.raw
        trigger = self.trigger()
        conditions = self.conditions(raw["where"]) if "where" in raw else ()
        unless = self.unless(raw["unless"]) if "unless" in raw else None
        backfill = self.backfill(raw["backfill"]) if "backfill" in raw else None
        actions = [self.action(i, item) for i, item in enumerate(raw["do"])]
        if len(self.errors) > before or trigger is None:
            return None
        return Rule(
            id=self.rule_id,
            trigger=trigger,
            actions=tuple(a for a in actions if a is not None),
            description=raw.get("description", ""),
            conditions=conditions,
            unless=unless,
            backfill=backfill,
            enabled=raw.get("enabled", True),
            file=self.source.name,
            line=self.source.where(self.base)[0],
        )

    # Values -------------------------------------------------------------------------------

    def offset(self, value: Any, *path: str | int) -> Offset | None:
        try:
            return parse_offset(value)
        except ValueError as exc:
            self.error(str(exc), *path)
            return None

    def time_of_day(self, value: Any, *path: str | int) -> time | None:
        try:
            return parse_time_of_day(value)
        except ValueError as exc:
            self.error(str(exc), *path)
            return None

    def at_needs_days(self, after: Offset | None, at: time | None, *path: str | int) -> None:
        if after is not None and at is not None and not after.day_based:
            self.error(
                f"at needs an after in days, weeks, months or working days; 'after: {after}' "
                f"already gives the exact time, so remove at",
                *path,
            )

    def event_types(self, value: str | list[str], *path: str | int) -> tuple[str, ...]:
        names = [value] if isinstance(value, str) else value
        for i, name in enumerate(names):
            if name not in self.site.event_types:
                hint = did_you_mean(name, self.site.event_types) or (
                    f"; known types: {', '.join(self.site.event_types)}"
                )
                self.error(
                    f"unknown event type '{name}'{hint} (a site adds its own under "
                    f"event_types: in site.yaml)",
                    *path,
                    *(() if isinstance(value, str) else (i,)),
                )
        return tuple(names)

    # Triggers -----------------------------------------------------------------------------

    def trigger(self) -> Trigger | None:
        when = self.when
        if self.kind == "event":
            return self.event_trigger(when)
        if self.kind == "schedule":
            try:
                schedule = schedule_from_spec(when, self.site.timezone, self.site.calendar)
            except ScheduleSpecError as exc:
                key = exc.key or next(key for key in SCHEDULE_KEYS if key in when)
                items = when.get(key)
                # In a list, such as monthly: [15, 32], point at the item named first.
                named = [
                    i
                    for i, item in enumerate(items if isinstance(items, list) else [])
                    if str(exc).startswith(f"{item!r} ")
                ]
                self.error(str(exc), "when", key, *named[:1])
                return None
            return ScheduleTrigger(schedule)
        at = self.time_of_day(when["at"], "when", "at") if "at" in when else None
        if when["annually"] != "customer.birthday":
            self.error(
                f"annually takes customer.birthday, the only date field in this version; "
                f"got {when['annually']!r}",
                "when",
                "annually",
            )
            return None
        return AnnualTrigger("customer.birthday", at or time(9, 0), when.get("feb29", "feb28"))

    def event_trigger(self, when: Mapping[str, Any]) -> EventTrigger | None:
        types = self.event_types(when["event"], "when", "event")
        after = self.offset(when["after"], "when", "after") if "after" in when else None
        at = self.time_of_day(when["at"], "when", "at") if "at" in when else None
        self.at_needs_days(after, at, "when", "at")
        per = when.get("per", "customer")
        if self.counting:
            for key in ("after", "at"):
                if key in when:
                    self.error(
                        f"{key} does not apply with count: a counting rule fires at the time "
                        f"of the count-th event",
                        "when",
                        key,
                        at_key=True,
                    )
            if per == "task" and not all(t.startswith("task.") for t in types):
                self.error("per: task needs task.* events", "when", "per")
        elif "per" in when:
            self.error("per only applies with count", "when", "per", at_key=True)
        count = when.get("count")
        return EventTrigger(types, after, at, None if count is None else int(count), per)

    # Conditions and cancellation ----------------------------------------------------------

    def conditions(self, where: Mapping[str, Any]) -> tuple[Condition, ...]:
        if self.kind == "schedule":
            self.error(
                "where does not apply to a schedule rule: a schedule fire has no customer, "
                "vehicle or event",
                "where",
                at_key=True,
            )
            return ()
        conditions: list[Condition] = []
        for path, matcher in where.items():
            scope, _, name = path.partition(".")
            if scope not in SCOPES or not name:
                self.error(
                    f"where field '{path}' must start with event., customer. or vehicle., "
                    f"like customer.member",
                    "where",
                    path,
                    at_key=True,
                )
            elif self.kind == "annual" and scope != "customer":
                self.error(
                    f"{path} is not available in an annually rule: it fires for a customer "
                    f"only, with no {scope}",
                    "where",
                    path,
                    at_key=True,
                )
            elif self.matcher_ok(matcher, "where", path):
                conditions.append(compile_matcher(path, matcher))
        return tuple(conditions)

    def matcher_ok(self, matcher: Any, *path: str) -> bool:
        if matcher is None:
            self.error("give a value to compare with, or use {exists: false}", *path)
            return False
        if isinstance(matcher, list) and not matcher:
            self.error("give at least one value in the list", *path)
            return False
        if not isinstance(matcher, Mapping):
            return True
        if len(matcher) != 1:
            self.error("write one operator per field, like {lt: 7}", *path)
            return False
        ((op, value),) = matcher.items()
        problem = None
        if op not in OPERATORS:
            self.error(
                f"unknown operator '{op}' in where; expected one of: {', '.join(OPERATORS)}"
                + did_you_mean(op, OPERATORS),
                *path,
                op,
                at_key=True,
            )
            return False
        if op in ("in", "not_in") and not (isinstance(value, list) and value):
            problem = f"{op} takes a list, like {{{op}: [a, b]}}"
        elif op == "exists" and not isinstance(value, bool):
            problem = "exists takes true or false"
        elif op in ("lt", "lte", "gt", "gte") and (
            value is None or isinstance(value, (bool, list, Mapping))
        ):
            problem = f"{op} takes one number, date or text, like {{{op}: 7}}"
        if problem:
            self.error(problem, *path, op)
        return problem is None

    def unless(self, value: list[str] | Mapping[str, Any]) -> Unless | None:
        if self.kind != "event" or self.counting:
            why = {
                "event": "a counting rule fires at once, so nothing is pending",
                "schedule": "a schedule rule has no anchoring event",
                "annual": "an annually rule has no anchoring event",
            }[self.kind]
            self.error(f"unless applies to event rules only: {why}", "unless", at_key=True)
            return None
        if isinstance(value, list):
            return Unless(self.event_types(value, "unless"))
        return Unless(
            self.event_types(value["events"], "unless", "events"), value.get("same", "customer")
        )

    def backfill(self, value: str) -> Backfill | None:
        if value.strip().casefold() == "all":
            return Backfill(None)
        offset = self.offset(value, "backfill")
        if offset is None:
            return None
        if offset.unit == "working_days":
            self.error(
                "backfill takes calendar time (minutes, hours, days, weeks or months), not "
                "working days; write e.g. '30 days'",
                "backfill",
            )
            return None
        if offset.unit == "months":  # long enough for any month
            return Backfill(timedelta(days=31 * offset.amount))
        return Backfill(timedelta(**{offset.unit: offset.amount}))

    # Actions ------------------------------------------------------------------------------

    def action(self, index: int, item: Mapping[str, Any]) -> Action | None:
        ((kind, spec),) = item.items()
        path = ("do", index, kind)
        if kind == "task":
            if spec["role"] not in self.site.roles:
                hint = did_you_mean(spec["role"], self.site.roles) or (
                    f"; roles: {', '.join(self.site.roles)}"
                )
                self.error(
                    f"unknown role '{spec['role']}'{hint} (roles are listed under roles: in "
                    f"site.yaml)",
                    *path,
                    "role",
                )
            title = self.template(spec["title"], *path, "title")
            note = self.template(spec["note"], *path, "note") if "note" in spec else None
            due = self.due(spec["due"], *path, "due") if "due" in spec else None
            if title is None:
                return None
            return TaskAction(spec["role"], title, due, note)
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
        for i, rule_id in enumerate(spec["rules"]):
            if rule_id not in self.rule_ids:
                self.error(
                    f"cancel names rule '{rule_id}', which is in no rule file"
                    + did_you_mean(rule_id, sorted(self.rule_ids)),
                    *path,
                    "rules",
                    i,
                )
        return CancelAction(tuple(spec["rules"]))

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
        problem, lineno = self.template_problem(template)
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

    def template_problem(self, template: Template) -> tuple[str | None, int | None]:
        """Check a template's names and fields against this rule's sample context."""
        sample = self.sample
        tree = _PARSER.parse(template.source)
        names = list(tree.find_all(jinja2.nodes.Name))
        known = {n.name for n in names if n.ctx != "load"} | {"loop", *_PARSER.globals, *sample}
        for node in names:
            if node.name in known:
                continue
            if node.name in _RECORDS:
                return f"{node.name} is not available in {self.why_not()}", node.lineno
            return (
                f"unknown name '{node.name}' in the template; names here: "
                f"{', '.join(sample)}{did_you_mean(node.name, list(sample))}",
                node.lineno,
            )
        for attr in tree.find_all(jinja2.nodes.Getattr):
            if isinstance(attr.node, jinja2.nodes.Name) and attr.node.name in sample:
                record = sample[attr.node.name]
                # Event data is free-form (a _FreeForm); the other records have fixed fields.
                if type(record) is dict and attr.attr not in record:
                    return (
                        f"{attr.node.name} has no field '{attr.attr}'; fields: "
                        f"{', '.join(record)}{did_you_mean(attr.attr, list(record))}",
                        attr.lineno,
                    )
        return template.check(sample), None

    def why_not(self) -> str:
        if self.kind == "schedule":
            return (
                "a schedule rule: a schedule fire has no customer, vehicle or event; "
                "use fire and site"
            )
        if self.kind == "annual":
            return "an annually rule: it fires for a customer only; use customer, fire and site"
        return f"a rule for {', '.join(self.types)}: task is there only for task.* events"


# --- The sample context templates are checked against -----------------------------------

_PARSER = jinja2.Environment()  # parses only: the names and fields a template uses
_RECORDS = ("customer", "vehicle", "event", "task")


def sample_context(
    site: Site, rule_id: str, kind: Kind, event_types: Sequence[str] = ()
) -> dict[str, Any]:
    """The names a template of this kind of rule may use, with sample values (docs/rules.md)."""
    tz = site.timezone
    fire_at = datetime(2026, 3, 2, 9, 30, tzinfo=tz)
    context: dict[str, Any] = {}
    if kind != "schedule":
        context["customer"] = {
            "id": 1, "name": "张三", "phone": "+8613800138000",
            "email": "zhangsan@example.com", "birthday": date(1988, 6, 15),
            "member": True, "opt_out": False, "attributes": {},
        }  # fmt: skip
    if kind == "event":
        context["vehicle"] = {
            "id": 1, "customer_id": 1, "vin": "LSGJA52U7EH000001", "plate": "沪A12345",
            "model": "Model", "attributes": {},
        }  # fmt: skip
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
