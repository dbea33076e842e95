"""Compiling one rule: the checks of meaning beyond the schema, then immutable rule objects.

Known event types, roles and rule ids, offsets and times of day, schedules, where fields and
operators, and templates are checked here; each problem is located at its value in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import time, timedelta
from typing import Any

from crmd.calendar.offsets import Offset, parse_offset, parse_time_of_day
from crmd.calendar.schedule_spec import SCHEDULE_KEYS, ScheduleSpecError, schedule_from_spec
from crmd.errors import RuleError
from crmd.rules.compile_actions import ActionCompiler
from crmd.rules.conditions import OPERATORS, SCOPES, Condition, compile_matcher
from crmd.rules.fieldcheck import RuleKind, samples, unknown_field
from crmd.rules.rule import (
    AnnualTrigger,
    Backfill,
    DateTrigger,
    EventTrigger,
    Late,
    Rule,
    ScheduleTrigger,
    Trigger,
    Unless,
)
from crmd.rules.schema import did_you_mean
from crmd.rules.yamlpos import JsonPath, YamlSource
from crmd.site import Site


def _kind(when: Mapping[str, Any]) -> RuleKind:
    if "event" in when:
        return "event"
    if "date" in when:
        return "date"
    return "annual" if "annually" in when else "schedule"


def set_fields_of(raw_rules: Any) -> set[str]:
    """The fields that `set` actions of these raw rules store, like vehicle.next_maintenance."""
    found: set[str] = set()
    for raw in raw_rules if isinstance(raw_rules, list) else []:
        actions = raw.get("do") if isinstance(raw, Mapping) else None
        for item in actions if isinstance(actions, list) else []:
            spec = item.get("set") if isinstance(item, Mapping) else None
            field = spec.get("field") if isinstance(spec, Mapping) else None
            if isinstance(field, str):
                found.add(field)
    return found


class RuleCompiler(ActionCompiler):
    """Check the meaning of one rule whose shape is valid, and compile it.

    `raw` is rule `index` of `source` and must already fit the schema; `rule_ids` are the
    ids of every rule in the set, for cancel to name; `set_fields` the fields the set's `set`
    actions store, for date triggers to watch. Problems go to `errors`, each located at its
    value in the file.
    """

    def __init__(
        self,
        source: YamlSource,
        index: int,
        raw: dict[str, Any],
        site: Site,
        rule_ids: set[str],
        errors: list[RuleError],
        set_fields: set[str] | frozenset[str] = frozenset(),
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
        self.set_fields = set_fields
        self.for_each = self.when.get("for_each") == "customer"
        self.date_scope = str(self.when.get("date", "")).partition(".")[0]
        # One sample fire per event type the rule receives (crmd.rules.fieldcheck); the names
        # available (customer, vehicle, event...) are the same in each but for task.
        self.samples = samples(
            site,
            self.rule_id,
            self.kind,
            self.types,
            for_each=self.for_each,
            vehicle=self.date_scope == "vehicle",
            set_fields=sorted(set_fields),
        )
        self.sample = self.samples[0].context

    def error(self, message: str, *path: str | int, at_key: bool = False) -> None:
        self.errors.append(
            self.source.error(message, (*self.base, *path), at_key=at_key, rule_id=self.rule_id)
        )

    def compile(self) -> Rule | None:
        """The compiled rule, or None if it has problems (they are in `errors`)."""
        before = len(self.errors)
        raw = self.raw
        trigger = self.trigger()
        conditions = self.conditions(raw["where"]) if "where" in raw else ()
        unless = self.unless(raw["unless"]) if "unless" in raw else None
        backfill = self.backfill(raw["backfill"]) if "backfill" in raw else None
        late = self.late(raw["late"]) if "late" in raw else None
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
            late=late,
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
                spec = {key: value for key, value in when.items() if key != "for_each"}
                schedule = schedule_from_spec(spec, self.site.timezone, self.site.calendar)
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
            return ScheduleTrigger(schedule, "customer" if self.for_each else None)
        if self.kind == "date":
            return self.date_trigger(when)
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
            if self.for_each:
                self.error(
                    "for_each does not apply with count: a counting rule fires for the subject "
                    "it counts",
                    "when",
                    "for_each",
                    at_key=True,
                )
        elif "per" in when:
            self.error("per only applies with count", "when", "per", at_key=True)
        count = when.get("count")
        return EventTrigger(
            types,
            after,
            at,
            None if count is None else int(count),
            per,
            "customer" if self.for_each else None,
        )

    def date_trigger(self, when: Mapping[str, Any]) -> DateTrigger | None:
        field = when["date"]
        scope, _, name = field.partition(".")
        ok = True
        if scope not in ("vehicle", "customer") or not name:
            self.error(
                f"date must be vehicle.<name> or customer.<name>, like "
                f"vehicle.next_maintenance; got {field!r}",
                "when",
                "date",
            )
            ok = False
        elif field not in self.set_fields:
            self.error(
                f"no rule sets {field}; a date rule watches a date stored by a set action, "
                f"like set: {{field: {field}, after: 6 months}}"
                + did_you_mean(field, sorted(self.set_fields)),
                "when",
                "date",
            )
            ok = False
        if "before" in when and "after" in when:
            self.error("give before or after, not both", "when", "after", at_key=True)
            ok = False
        offsets: dict[str, Offset | None] = {}
        for key in ("before", "after"):
            offsets[key] = self.day_offset(when[key], "when", key) if key in when else None
            if key in when and offsets[key] is None:
                ok = False
        at = self.time_of_day(when["at"], "when", "at") if "at" in when else time(9, 0)
        if not ok or at is None:
            return None
        return DateTrigger(field, offsets["before"], offsets["after"], at)

    def day_offset(self, value: Any, *path: str | int) -> Offset | None:
        """An offset in days, weeks, months or working days (a date has no time of day)."""
        offset = self.offset(value, *path)
        if offset is not None and not offset.day_based:
            self.error(
                f"{path[-1]} must be in days, weeks, months or working days, like '14 days'; "
                f"a date has no time of day, got {value!r}",
                *path,
            )
            return None
        return offset

    # Conditions and cancellation ----------------------------------------------------------

    def conditions(self, where: Mapping[str, Any]) -> tuple[Condition, ...]:
        if self.kind == "schedule" and not self.for_each:
            self.error(
                "where does not apply to a schedule rule: a schedule fire has no customer, "
                "vehicle or event (with for_each: customer, it may test customer fields)",
                "where",
                at_key=True,
            )
            return ()
        conditions: list[Condition] = []
        for path, matcher in where.items():
            problem = self.field_problem(path, "where")
            if problem:
                self.error(problem, "where", path, at_key=True)
            elif self.matcher_ok(matcher, "where", path):
                conditions.append(compile_matcher(path, matcher))
        return tuple(conditions)

    def field_problem(self, path: Any, what: str) -> str | None:
        """Why `path` (like event.department) names no field this rule's fires have, if so."""
        scope, _, name = str(path).partition(".")
        if scope not in SCOPES or not name:
            return (
                f"{what} field '{path}' must start with event., customer. or vehicle., "
                f"like customer.member"
            )
        if scope in self.sample:
            return unknown_field(scope, name, self.samples)
        if self.kind == "annual":
            return (
                f"{path} is not available in an annually rule: it fires for a customer "
                f"only, with no {scope}"
            )
        has = [s for s in SCOPES if s in self.sample]
        rule = {
            "event": "a rule with for_each: customer",
            "schedule": "a schedule rule",
            "date": "a date rule",
            "annual": "",
        }[self.kind]
        return (
            f"{path} is not available in {rule}: its fires have "
            f"{' and '.join(has) if has else 'no customer, vehicle or event'}, with no {scope}"
        )

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
                "date": "a date rule has no anchoring event",
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
        span = self.elapsed(value, "backfill", example="30 days")
        return None if span is None else Backfill(span)

    def late(self, value: Mapping[str, Any]) -> Late | None:
        span = self.elapsed(value["skip_after"], "late", "skip_after", example="1 day")
        return None if span is None else Late(span)

    def elapsed(self, value: str, *path: str, example: str) -> timedelta | None:
        """A span of calendar time; a month counts as 31 days, long enough for any month."""
        offset = self.offset(value, *path)
        if offset is None:
            return None
        if offset.unit == "working_days":
            self.error(
                f"{path[-1]} takes calendar time (minutes, hours, days, weeks or months), not "
                f"working days; write e.g. '{example}'",
                *path,
            )
            return None
        if offset.unit == "months":
            return timedelta(days=31 * offset.amount)
        return timedelta(**{offset.unit: offset.amount})
