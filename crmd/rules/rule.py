"""Compiled rules: the immutable objects a validated rule file becomes at load time.

The evaluator never sees YAML; it sees these. See docs/rules.md for the language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Literal

from crmd.calendar.offsets import Offset
from crmd.calendar.schedules import Schedule
from crmd.rules.conditions import Condition
from crmd.rules.templates import Template

Per = Literal["customer", "vehicle", "task"]


@dataclass(frozen=True)
class EventTrigger:
    """Fire for each matching event, at its time plus an optional offset and alignment."""

    types: tuple[str, ...]
    after: Offset | None = None
    at: time | None = None
    # Counting form: fire once when the count-th matching event for one `per` subject arrives.
    count: int | None = None
    per: Per = "customer"
    # Fan-out: one fire per customer that meets the rule's conditions (P14 weather care).
    for_each: Literal["customer"] | None = None


@dataclass(frozen=True)
class ScheduleTrigger:
    """Fire at every occurrence of a calendar schedule; the subject is the site."""

    schedule: Schedule
    for_each: Literal["customer"] | None = None


@dataclass(frozen=True)
class AnnualTrigger:
    """Fire every year on the anniversary of a date field (birthdays)."""

    field: str  # "customer.birthday"
    at: time = time(9, 0)
    feb29: Literal["feb28", "mar1"] = "feb28"


@dataclass(frozen=True)
class DateTrigger:
    """Fire relative to a date that a `set` action stored (P12: the next maintenance)."""

    field: str  # "vehicle.next_maintenance" or "customer.<name>"
    before: Offset | None = None
    after: Offset | None = None
    at: time = time(9, 0)

    @property
    def scope(self) -> str:
        return self.field.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.field.split(".", 1)[1]


Trigger = EventTrigger | ScheduleTrigger | AnnualTrigger | DateTrigger


@dataclass(frozen=True)
class Unless:
    """Event types that cancel a pending fire for the same customer or vehicle."""

    types: tuple[str, ...]
    same: Literal["customer", "vehicle"] = "customer"


@dataclass(frozen=True)
class Due:
    """When a task falls due, relative to its fire time.

    Either an offset (with optional time-of-day), or the next given day of the month.
    """

    after: Offset | None = None
    at: time | None = None
    day: int | Literal["last"] | None = None
    shift: Literal["none", "previous_working_day", "next_working_day"] = "none"


@dataclass(frozen=True)
class RoleChoice:
    """A task role picked by a field's value (P9: the department that handled a complaint)."""

    field: str  # "event.department"
    choices: tuple[tuple[str, str], ...]  # (value, role)
    default: str

    def pick(self, value: object) -> str:
        for key, role in self.choices:
            if key == value:
                return role
        return self.default

    @property
    def roles(self) -> tuple[str, ...]:
        return (*(role for _, role in self.choices), self.default)


@dataclass(frozen=True)
class TaskAction:
    role: str | RoleChoice
    title: Template
    due: Due | None = None
    note: Template | None = None


@dataclass(frozen=True)
class SmsAction:
    text: Template


@dataclass(frozen=True)
class EmailAction:
    subject: Template
    body: Template
    to: tuple[str, ...] = ()  # empty: the customer's address


@dataclass(frozen=True)
class CancelAction:
    """Close the open tasks the named rules made for this subject, as cancelled."""

    rules: tuple[str, ...]
    # Only the one of `rules` whose id is this event field's value (report.submitted).
    matching: str | None = None


@dataclass(frozen=True)
class CompleteAction(CancelAction):
    """Close the open tasks the named rules made for this subject, as done."""


@dataclass(frozen=True)
class SetDateAction:
    """Store a date on the customer or vehicle for date triggers to watch (P12).

    The date is `after` the fire's day; with `km`, the day the vehicle is projected to have
    driven that far since this fire, from its mileage history, if that comes first.
    """

    field: str  # "vehicle.next_maintenance"
    after: Offset
    km: int | None = None


@dataclass(frozen=True)
class EmitAction:
    """Record a new event for the same customer and vehicle (P9: a complaint reopened)."""

    event: str
    data: tuple[tuple[str, Template], ...] = ()


Action = (
    TaskAction
    | SmsAction
    | EmailAction
    | CancelAction
    | CompleteAction
    | SetDateAction
    | EmitAction
)


@dataclass(frozen=True)
class Backfill:
    """How far into the past a rule fires when first seen; None span means all history."""

    span: timedelta | None


@dataclass(frozen=True)
class Late:
    """How late is too late: a fire found more than `skip_after` after its time (the daemon
    was down, the clock jumped) is recorded as skipped and does nothing."""

    skip_after: timedelta


@dataclass(frozen=True)
class Rule:
    id: str
    trigger: Trigger
    actions: tuple[Action, ...]
    description: str = ""
    conditions: tuple[Condition, ...] = ()
    unless: Unless | None = None
    backfill: Backfill | None = None
    late: Late | None = None
    enabled: bool = True
    file: str = ""
    line: int = 0

    @property
    def event_types(self) -> tuple[str, ...]:
        return self.trigger.types if isinstance(self.trigger, EventTrigger) else ()


@dataclass(frozen=True)
class RuleSet:
    """Every rule of a site, loaded together; `files` maps file name to its rule count."""

    rules: tuple[Rule, ...]
    files: Mapping[str, int] = field(default_factory=dict)

    def by_id(self) -> dict[str, Rule]:
        return {r.id: r for r in self.rules}

    def enabled(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)


def describe_trigger(trigger: Trigger) -> str:
    """A short English description of a trigger, for `check` and `plan`."""
    if isinstance(trigger, ScheduleTrigger):
        return trigger.schedule.describe()
    if isinstance(trigger, AnnualTrigger):
        return f"every year on {trigger.field} at {trigger.at:%H:%M}"
    if isinstance(trigger, DateTrigger):
        when = (
            f"{trigger.before} before "
            if trigger.before
            else f"{trigger.after} after "
            if trigger.after
            else "on "
        )
        return f"{when}{trigger.field} at {trigger.at:%H:%M}"
    what = " or ".join(trigger.types)
    if trigger.count:
        return f"{what} number {trigger.count} per {trigger.per}"
    text = f"{what}"
    if trigger.after:
        text += f" + {trigger.after}"
    if trigger.at:
        text += f" at {trigger.at:%H:%M}"
    return text
