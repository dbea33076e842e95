"""The fields each record has, as rules may name them: every event type's fields, the
customer's, the vehicle's and the task's (docs/rules.md, *Fields*).

A misspelt field in a condition silently never holds (P4 disabled by `event.outcme`), and in
a template it sends a customer a broken text. So the fields are declared: the built-in event
types here, a site's own types and extra fields in site.yaml (`event_types`,
`customer_fields`, `vehicle_fields`), and `crmd check` refuses a name outside them. What the
sets hold must match what crmd.engine.contexts gives a fire at run time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from crmd.events import BUILTIN_EVENT_TYPES

# The event columns every event has (crmd.engine.contexts._EVENT_COLUMNS but task_id).
EVENT_COLUMNS: tuple[str, ...] = ("id", "type", "at", "customer_id", "vehicle_id")
# What a task event carries besides its columns (crmd.engine.taskevents.task_event).
TASK_EVENT_FIELDS: tuple[str, ...] = ("task_id", "rule", "role")
# The customers and vehicles columns a rule sees (crmd.engine.contexts.record_fields drops
# birthday_md); extra attributes and stored dates come on top.
CUSTOMER_COLUMNS: tuple[str, ...] = (
    "id", "name", "phone", "email", "birthday", "member", "opt_out", "attributes",
    "created_at", "updated_at",
)  # fmt: skip
VEHICLE_COLUMNS: tuple[str, ...] = (
    "id", "customer_id", "vin", "plate", "model", "attributes", "created_at", "updated_at",
)  # fmt: skip
# What crmd.engine.contexts gives `task` for a task.* event.
TASK_FIELDS: tuple[str, ...] = ("id", "title", "role", "rule", "due_at")


@dataclass(frozen=True)
class EventType:
    """One event type: the data fields its events carry, and those they must carry."""

    name: str
    data: tuple[str, ...] = ()
    required: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """Every field a rule may name: the columns, then the data fields."""
        task = TASK_EVENT_FIELDS if self.name.startswith("task.") else ()
        extra = tuple(f for f in (*task, *self.data) if f not in EVENT_COLUMNS)
        return EVENT_COLUMNS + tuple(dict.fromkeys(extra))


# The built-in types' data (docs/rules.md, *Event types*). Required fields are those a
# shipped rule cannot do without: a weather text names the weather (P14), a submitted report
# names the rule whose task it closes (P20-P31), a reopened complaint says why (P9).
_BUILTIN_DATA: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "sale.delivered": (("kind", "mileage"), ()),
    "service.completed": (("kind", "mileage"), ()),
    "complaint.opened": (("severity", "department", "summary"), ()),
    "complaint.assigned": (("department", "summary"), ()),
    "complaint.resolved": (("department", "summary"), ()),
    "complaint.reopened": (("reason", "rule"), ("reason",)),
    "member.joined": ((), ()),
    "customer.opted_out": ((), ()),
    "weather.alert": (("kind",), ("kind",)),
    "report.submitted": (("report",), ("report",)),
    "cs_score.released": (("period", "score"), ()),
    "task.created": ((), ()),
    "task.attempted": (("outcome", "score", "note"), ("outcome",)),
    "task.done": (("note",), ()),
    "task.overdue": ((), ()),
    "task.cancelled": ((), ()),
}
BUILTIN_TYPES: tuple[EventType, ...] = tuple(
    EventType(name, *_BUILTIN_DATA[name]) for name in BUILTIN_EVENT_TYPES
)


@dataclass(frozen=True)
class Fields:
    """A site's declared fields: its event types (built-in ones first) and the extra
    attributes of its customers and vehicles."""

    event_types: tuple[EventType, ...] = BUILTIN_TYPES
    customer_extra: tuple[str, ...] = ()
    vehicle_extra: tuple[str, ...] = ()

    def event_type(self, name: str) -> EventType:
        """The declared type; a name declared without fields has the columns only."""
        return next((t for t in self.event_types if t.name == name), EventType(name))

    def customer(self, stored: Iterable[str] = ()) -> tuple[str, ...]:
        """The customer's fields; `stored` are the names of dates `set` actions store."""
        return tuple(dict.fromkeys((*CUSTOMER_COLUMNS, *self.customer_extra, *stored)))

    def vehicle(self, stored: Iterable[str] = ()) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*VEHICLE_COLUMNS, *self.vehicle_extra, *stored)))


def site_fields(
    declared: Mapping[str, tuple[list[str], list[str]]],
    customer_extra: Iterable[str] = (),
    vehicle_extra: Iterable[str] = (),
) -> Fields:
    """The built-in types with the site's additions: `declared` maps a type to its extra
    data fields and required fields (a built-in type keeps its own and gains these)."""
    types: list[EventType] = []
    for builtin in BUILTIN_TYPES:
        data, required = declared.get(builtin.name, ([], []))
        types.append(
            EventType(
                builtin.name,
                tuple(dict.fromkeys((*builtin.data, *data, *required))),
                tuple(dict.fromkeys((*builtin.required, *required))),
            )
        )
    for name, (data, required) in declared.items():
        if name not in BUILTIN_EVENT_TYPES:
            types.append(EventType(name, tuple(dict.fromkeys((*data, *required))), tuple(required)))
    return Fields(tuple(types), tuple(customer_extra), tuple(vehicle_extra))
