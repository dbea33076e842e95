"""The event types crmd understands out of the box (docs/rules.md, DOMAIN.md)."""

from __future__ import annotations

# Facts that arrive from outside: imports, the CLI, integrations.
BUSINESS_EVENTS: tuple[str, ...] = (
    "sale.delivered",
    "service.completed",
    "complaint.opened",
    "complaint.assigned",  # the CR manager hands a complaint to a department (P7, P8)
    "complaint.resolved",
    "complaint.reopened",  # the customer is still unsatisfied (P9)
    "member.joined",
    "customer.opted_out",
    "weather.alert",
    "report.submitted",
    "cs_score.released",
)

# Task lifecycle changes are events too, so rules can chain on them (P4 escalations).
TASK_CREATED = "task.created"
TASK_ATTEMPTED = "task.attempted"
TASK_DONE = "task.done"
TASK_OVERDUE = "task.overdue"
TASK_CANCELLED = "task.cancelled"
TASK_EVENTS: tuple[str, ...] = (
    TASK_CREATED,
    TASK_ATTEMPTED,
    TASK_DONE,
    TASK_OVERDUE,
    TASK_CANCELLED,
)

BUILTIN_EVENT_TYPES: tuple[str, ...] = BUSINESS_EVENTS + TASK_EVENTS

# Outcomes of a call attempt (DOMAIN.md: facts that arrive). `reached` closes a call task.
ATTEMPT_OUTCOMES: tuple[str, ...] = (
    "reached",
    "no_answer",
    "powered_off",
    "forwarded",
    "unreachable",
    "refused",
)
