"""What a rule sees of a fire: the customer, vehicle, event and task, as plain fields.

The same mapping feeds conditions (`where`) and templates, so what `crmd check` validates
is what a fire renders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row

from crmd.engine.fieldneeds import Needs
from crmd.events import TASK_EVENTS
from crmd.rules.templates import EventFields
from crmd.site import Site
from crmd.store import queries as q
from crmd.store import work

Context = dict[str, Any]
# The event columns a rule sees as fields (`at` in the site's zone).
_EVENT_COLUMNS: tuple[str, ...] = ("id", "type", "at", "task_id", "customer_id", "vehicle_id")
# (customer id, vehicle id, anchoring event) of one fire.
Subject = tuple[str | None, str | None, Row[Any] | None]


def record_fields(
    row: Mapping[str, Any] | None, stored_dates: Mapping[str, Any]
) -> dict[str, Any] | None:
    """A customer or vehicle row as fields: extra attributes and rule-set dates included."""
    if row is None:
        return None
    fields = dict(row)
    attributes = dict(fields.get("attributes") or {})
    for key, value in (*attributes.items(), *stored_dates.items()):
        fields.setdefault(key, value)
    fields["attributes"] = attributes
    fields.pop("birthday_md", None)
    return fields


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """The value of `event.department`-style path in a context, or None."""
    scope, _, name = path.partition(".")
    record = context.get(scope)
    return None if record is None else record.get(name)


class ContextBuilder:
    """Builds contexts for many fires at once, loading rows in bulk."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.site_fields = {"name": site.name, "timezone": str(site.timezone)}

    def event_fields(self, row: Row[Any], names: Sequence[str] | None = None) -> EventFields:
        """The event's data and columns as fields (columns win); only `names` if given."""
        data = row.data or {}
        if names is None:
            fields, columns = EventFields(data), _EVENT_COLUMNS
        else:
            fields = EventFields({name: data[name] for name in names if name in data})
            columns = tuple(name for name in names if name in _EVENT_COLUMNS)
        for name in columns:
            value = getattr(row, name)
            fields[name] = value.astimezone(self.site.timezone) if name == "at" else value
        return fields

    def build(
        self, conn: Connection, items: Sequence[Subject], needs: Needs | None = None
    ) -> list[Context]:
        """Contexts for these fires; `needs` (crmd.engine.fieldneeds) narrows the columns read."""
        needs = needs or {}
        people = q.customers_by_id(conn, {c for c, _, _ in items if c}, needs.get("customer"))
        cars = q.vehicles_by_id(conn, {v for _, v, _ in items if v}, needs.get("vehicle"))
        # Stored dates are fields too; a rule that names one reads whole rows (fieldneeds).
        people_dates = q.dates_of(conn, "customer", people) if not needs.get("customer") else {}
        car_dates = q.dates_of(conn, "vehicle", cars) if not needs.get("vehicle") else {}
        event_names = needs.get("event")
        task_ids = {e.task_id for _, _, e in items if e is not None and e.task_id is not None}
        task_rows = work.tasks_by_id(conn, task_ids)
        # Narrowed records hold only plain columns: they are the fields as read.
        whole_people, whole_cars = needs.get("customer") is None, needs.get("vehicle") is None
        out = []
        for customer_id, vehicle_id, event in items:
            person = people.get(customer_id or "")
            car = cars.get(vehicle_id or "")
            ctx: Context = {
                "customer": record_fields(person, people_dates.get(customer_id or "", {}))
                if whole_people
                else person,
                "vehicle": record_fields(car, car_dates.get(vehicle_id or "", {}))
                if whole_cars
                else car,
                "event": self.event_fields(event, event_names) if event is not None else None,
                "site": self.site_fields,
            }
            if event is not None and event.type in TASK_EVENTS and event.task_id in task_rows:
                task = task_rows[event.task_id]
                ctx["task"] = {
                    "id": task.id,
                    "title": task.title,
                    "role": task.role,
                    "rule": task.rule_id,
                    "due_at": task.due_at.astimezone(self.site.timezone),
                }
            out.append(ctx)
        return out

    def for_events(
        self, conn: Connection, rows: Sequence[Row[Any]], needs: Needs | None = None
    ) -> dict[int, Context]:
        """Contexts for event rows, keyed by event seq."""
        ctxs = self.build(conn, [(r.customer_id, r.vehicle_id, r) for r in rows], needs)
        return {r.seq: c for r, c in zip(rows, ctxs, strict=True)}
