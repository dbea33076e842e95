"""The `task` channel: a message becomes a staff task in the store (send it by hand).

A dealership without an SMS provider points channel `sms` at this type, and the CR
specialist gets a task with the text to send (P6: customers who refuse calls get an SMS).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar

from sqlalchemy import select

from crmd.channels.base import BaseChannel, Message, Receipt
from crmd.engine.taskevents import task_event
from crmd.events import TASK_CREATED
from crmd.site import Site
from crmd.store import queries as q
from crmd.store import work
from crmd.store.tables import tasks


class TaskChannel(BaseChannel):
    """Creates one open task per message for a role, due some hours later."""

    options: ClassVar[Mapping[str, Any]] = {
        "role": {"type": "string", "description": "a role name from site.yaml"},
        "due_hours": {"type": "integer", "minimum": 1},
    }

    @classmethod
    def option_problems(cls, options: Mapping[str, Any], site: Site) -> list[tuple[str, str]]:
        role = options.get("role", "cr_specialist")
        if role not in site.roles:
            return [("role", f"unknown role '{role}'; roles: {', '.join(site.roles)}")]
        return []

    def _note(self, message: Message) -> str:
        return f"{message.channel} to {message.recipient}:\n{message.body}"

    def send(self, message: Message) -> Receipt:
        now = message.at
        options = self.settings.options
        row: dict[str, Any] = {
            "fire_id": message.fire_id,
            "rule_id": message.rule_id,
            "role": options.get("role", "cr_specialist"),
            "title": message.subject or message.body.splitlines()[0][:80],
            "note": self._note(message),
            "customer_id": message.customer_id,
            "vehicle_id": None,
            "available_at": now,
            "due_at": now + timedelta(hours=int(options.get("due_hours", 4))),
            "status": "open",
            "overdue": False,
            "attempts": 0,
            "created_at": now,
        }
        with self.runtime.store.write() as conn:
            (task_id,) = work.insert_tasks(conn, [row])
            q.insert_events(conn, [task_event(dict(row, id=task_id), TASK_CREATED, now, now)])
        return Receipt(f"task:{task_id}")

    def reconcile(self, message: Message, claimed_at: datetime) -> Receipt | None:
        # The store is the provider: the task is there or it is not, nothing in between.
        with self.runtime.store.read() as conn:
            found = conn.execute(
                select(tasks.c.id).where(
                    tasks.c.fire_id == message.fire_id,
                    tasks.c.rule_id == message.rule_id,
                    tasks.c.note == self._note(message),
                )
            ).first()
        return Receipt(f"task:{found.id}") if found else None
