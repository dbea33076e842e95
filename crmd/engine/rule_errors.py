"""Rules that fail on every tick: each one's last error and since when, for `crmd status`.

A rule whose evaluation raises an expected error (a calendar year not published, say) does
not stop the others (crmd.engine.evaluation); its watermark stays put and the next tick tries again.
Until it succeeds, its row in `rule_state` keeps the last error, when it first failed and
when it last did, so `crmd status` shows it as failing rather than the site as fine. The
first successful evaluation clears them, and so does the rule leaving the set (deleted or
disabled).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, literal, select, update

from crmd.rules.rule import Rule
from crmd.store.database import Unit
from crmd.store.tables import rule_state


@dataclass(frozen=True)
class RuleFailure:
    """A rule failing on every tick, as `crmd status` shows it."""

    rule_id: str
    error: str
    since: datetime  # the first tick of this run of failures
    last: datetime  # the latest failing tick

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "error": self.error,
            "failing_since": self.since.isoformat(),
            "last_failed_at": self.last.isoformat(),
        }


def failures(conn: Connection) -> list[RuleFailure]:
    """Every rule failing now, the longest-failing first."""
    rows = conn.execute(
        select(
            rule_state.c.rule_id,
            rule_state.c.last_error,
            rule_state.c.failing_since,
            rule_state.c.last_failed_at,
        )
        .where(rule_state.c.last_error.is_not(None))
        .order_by(rule_state.c.failing_since, rule_state.c.rule_id)
    )
    return [RuleFailure(r.rule_id, r.last_error, r.failing_since, r.last_failed_at) for r in rows]


def failing_rules(
    conn: Connection, states: Mapping[str, Row[Any]], rules: Iterable[Rule]
) -> set[str]:
    """The ids of `rules` whose state (`states`, the rule_state rows) records a failure.

    Failures recorded for a rule no longer in the set (deleted, disabled) are cleared,
    since nothing would clear them otherwise.
    """
    wanted = {r.id for r in rules}
    failing = {rule_id for rule_id, row in states.items() if row.last_error is not None}
    gone = failing - wanted
    if gone:
        _clear(conn, gone)
    return failing & wanted


def record_failure(unit: Unit, rule_id: str, error: str, now: datetime) -> None:
    """Note that `rule_id` failed at `now` with `error` (keeping when it first failed)."""
    with unit.batch() as conn:
        conn.execute(
            update(rule_state)
            .where(rule_state.c.rule_id == rule_id)
            .values(
                last_error=error,
                failing_since=func.coalesce(
                    rule_state.c.failing_since, literal(now, rule_state.c.failing_since.type)
                ),
                last_failed_at=now,
            )
        )


def clear_failure(unit: Unit, rule_id: str) -> None:
    """The rule succeeded: it is no longer failing."""
    with unit.batch() as conn:
        _clear(conn, {rule_id})


def _clear(conn: Connection, rule_ids: set[str]) -> None:
    conn.execute(
        update(rule_state)
        .where(rule_state.c.rule_id.in_(sorted(rule_ids)))
        .values(last_error=None, failing_since=None, last_failed_at=None)
    )
