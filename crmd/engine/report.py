"""What a tick or a plan did: counts per rule, a bounded sample of fires, and a stream of all.

A catch-up or a month's plan can make hundreds of thousands of fires. The report never
holds them all: it counts them per rule and status, keeps the first `sample_size` records
(every fire of an ordinary tick), and hands each record, as it is made, to `on_fire` for a
caller that wants them all (`crmd plan` lists them all, in time order). Tasks falling
overdue are counted the same way, with the ids of the first `sample_size` kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crmd.engine.horizon import Stop

# Fire records a report keeps; more than an ordinary tick makes.
SAMPLE_SIZE = 1000


@dataclass
class FireRecord:
    """What one fire did, for logs, `tick` output and `plan`."""

    rule_id: str
    key: str
    subject: str
    fire_at: datetime
    status: str  # fired | cancelled | skipped | failed
    late: bool
    customer_id: str | None
    vehicle_id: str | None
    actions: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""
    # For the person doing its task: missing data, lateness (crmd/engine/outcomes.py).
    warnings: list[str] = field(default_factory=list)


def does_in_short(a: dict[str, Any]) -> str:
    """An action reduced to whom it reaches: "task sales_callback", "sms", ..."""
    if a["action"] == "task":
        return f"task {a['role']}" + (" (not made)" if a.get("skipped") else "")
    if a["action"] in ("sms", "email") and a.get("skipped"):
        return f"{a['action']} (not sent)"
    return str(a["action"])


@dataclass
class RuleTally:
    """One rule's fires in a report: how many per status, when first and last, what they did."""

    statuses: dict[str, int] = field(default_factory=dict)
    late: int = 0  # fired late
    first: datetime | None = None
    last: datetime | None = None
    does: dict[str, int] = field(default_factory=dict)  # by does_in_short, fired ones only

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def add(self, record: FireRecord) -> None:
        self.statuses[record.status] = self.statuses.get(record.status, 0) + 1
        if self.first is None or record.fire_at < self.first:
            self.first = record.fire_at
        if self.last is None or record.fire_at > self.last:
            self.last = record.fire_at
        if record.status != "fired":
            return
        self.late += record.late
        for a in record.actions:
            key = does_in_short(a)
            self.does[key] = self.does.get(key, 0) + 1


@dataclass
class TickReport:
    now: datetime
    # Fires are late when written more than LATE_AFTER (crmd.engine.new_fires) after their
    # time. A tick writes them at `now`; a plan of the future would write each at its own
    # time, or at the real clock's time for those already past (a catch-up).
    late_as_of: datetime | None = None
    # Every fire's record goes here as it is made (in the order the engine makes them).
    on_fire: Callable[[FireRecord], None] | None = None
    # The first `sample_size` fires' records; `rules` counts them all.
    fires: list[FireRecord] = field(default_factory=list)
    sample_size: int = SAMPLE_SIZE
    rules: dict[str, RuleTally] = field(default_factory=dict)
    # Ids of the first `sample_size` tasks that fell overdue; `overdue_count` counts them all.
    overdue: list[int] = field(default_factory=list)
    overdue_count: int = 0
    errors: list[str] = field(default_factory=list)
    # A plan's rules that stopped at a calendar year not known: where, and why
    # (crmd.engine.horizon).
    stops: dict[str, Stop] = field(default_factory=dict)
    rounds: int = 0
    # Failed fires tried again in this pass (any outcome), and those still failed after it.
    retried: int = 0
    failed_pending: int = 0
    # Fires that fell due before their rule came into force whose tasks' windows had
    # closed: history, not made (crmd.engine.takeover).
    history: int = 0

    def add(self, record: FireRecord) -> None:
        """Count a fire, keep it if the sample has room, and pass it on."""
        self.rules.setdefault(record.rule_id, RuleTally()).add(record)
        if len(self.fires) < self.sample_size:
            self.fires.append(record)
        if self.on_fire is not None:
            self.on_fire(record)

    def add_overdue(self, task_ids: Sequence[int]) -> None:
        """Count tasks that fell overdue and keep their ids while the sample has room."""
        self.overdue_count += len(task_ids)
        self.overdue.extend(task_ids[: max(self.sample_size - len(self.overdue), 0)])

    def count(self, status: str | None = None) -> int:
        """Fires of every rule with this status (all fires without one)."""
        if status is None:
            return sum(t.total for t in self.rules.values())
        return sum(t.statuses.get(status, 0) for t in self.rules.values())

    @property
    def late_fired(self) -> int:
        return sum(t.late for t in self.rules.values())

    @property
    def left_out(self) -> int:
        """Fires counted but not kept in `fires`."""
        return self.count() - len(self.fires)
