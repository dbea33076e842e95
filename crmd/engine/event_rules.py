"""Evaluating a rule triggered by events, in two phases, a page at a time.

1. Late arrivals and counting: events recorded after the rule's event cursor S whose fire
   time is at or before its watermark W (an import of last week's deliveries), and the
   Nth-event counts (P4: three failed attempts), in arrival order.
2. Due fires: fires whose time lies in (W, now], found by a range query on the events'
   time index; an offset rule's fire time is monotone in the event time
   (crmd.engine.triggers).

Each page saves the rule's progress (W and S) in its own transaction, with its fires.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Row

from crmd.engine.actions import ActionWriter
from crmd.engine.candidates import Candidate, event_candidate
from crmd.engine.new_fires import apply_fires
from crmd.engine.paging import OpenPage
from crmd.engine.report import TickReport
from crmd.engine.takeover import reach
from crmd.engine.triggers import EPOCH, TICK, event_fire_time, event_span
from crmd.rules.rule import EventTrigger, Rule
from crmd.site import Site
from crmd.store import queries as q
from crmd.store import watermarks
from crmd.store.database import Unit

# Events share times (a day's deliveries, an import's dates) and an event's fire time is a
# pure function of its trigger, time, zone and calendar: each is worked out once. Event
# times come from the store in UTC, where equal times are the same instant.
_event_fire_time = lru_cache(maxsize=4096)(event_fire_time)


def evaluate_event_rule(
    unit: Unit,
    open_page: OpenPage,
    writer: ActionWriter,
    site: Site,
    rule: Rule,
    trigger: EventTrigger,
    now: datetime,
    report: TickReport,
    *,
    watermark: datetime,
    since: datetime,
    seq_from: int,
    seq_upto: int,
) -> int:
    """Evaluate an event rule at `now`, from its watermark and event cursor (`seq_from`) up
    to `now` and the store's last event (`seq_upto`); `since` is when it came into force.
    Returns how many events its fires produced."""
    tz, cal = site.timezone, site.calendar
    low, high = event_span(trigger)
    produced = 0
    # Phase 1: events recorded since the last look (late arrivals, counting).
    late_upto = None if trigger.count is not None else watermark - low
    span = reach(rule)
    history_from = EPOCH if span is None else since - span
    cursor = seq_from
    while cursor < seq_upto:
        with open_page() as txn:
            rows = q.events_recorded_between(
                txn.conn, trigger.types, cursor, seq_upto, late_upto, txn.size
            )
            txn.rows = len(rows)
            # Where the next page starts; the rule's state saves it with this page's
            # last part (txn.conn after apply_fires).
            cursor = rows[-1].seq if len(rows) == txn.size else seq_upto
            if trigger.count is not None:
                page = _count_candidates(txn.conn, writer, rule, trigger, rows, since)
            else:
                # An event recorded after its rule came into force always gets its fire,
                # however late it was keyed in; one that fell due before (history keyed
                # in later) gets what is still of use of it (crmd.engine.takeover).
                page = []
                for row in rows:
                    fire_at = _event_fire_time(trigger, row.at, tz, cal)
                    if history_from < fire_at <= watermark:
                        page.append(event_candidate(rule, row, fire_at))
            produced += apply_fires(txn, writer, rule, page, now, report, since)
            watermarks.save_rule_state(txn.conn, rule.id, watermark, cursor, now)
    if trigger.count is not None:
        with unit.batch() as conn:
            watermarks.save_rule_state(conn, rule.id, max(watermark, now), seq_upto, now)
        return produced
    if watermark >= now:
        # Nothing is due (a second round after this rule's own fires, say): phase 2's
        # window is empty, and phase 1 has saved the cursor.
        return produced
    # Phase 2: fires falling due in (watermark, now], by a range query on event time.
    after, upto = watermark - high, now - low
    page_cursor: tuple[datetime, int] | None = None
    done = False
    while not done:
        with open_page() as txn:
            rows = q.events_between(
                txn.conn, trigger.types, after, upto, seq_upto, page_cursor, txn.size
            )
            txn.rows = len(rows)
            done = len(rows) < txn.size
            page = []
            for row in rows:
                fire_at = _event_fire_time(trigger, row.at, tz, cal)
                if watermark < fire_at <= now:
                    page.append(event_candidate(rule, row, fire_at))
            produced += apply_fires(txn, writer, rule, page, now, report, since)
            if done:
                watermarks.save_rule_state(txn.conn, rule.id, max(watermark, now), seq_upto, now)
            else:
                # Everything before the last fire time of this page is done.
                last = _event_fire_time(trigger, rows[-1].at, tz, cal)
                watermark = max(watermark, min(last - TICK, now))
                page_cursor = (rows[-1].at, rows[-1].seq)
                watermarks.save_rule_state(txn.conn, rule.id, watermark, seq_upto, now)
    return produced


def _count_candidates(
    conn: Connection,
    writer: ActionWriter,
    rule: Rule,
    trigger: EventTrigger,
    rows: Sequence[Row[Any]],
    since: datetime,
) -> list[Candidate]:
    """Candidates for the Nth matching event per subject (P4: three failed attempts)."""
    column = {"customer": "customer_id", "vehicle": "vehicle_id", "task": "task_id"}[trigger.per]
    contexts = writer.contexts(conn, rule, rows)
    page: list[Candidate] = []
    for row in rows:
        value = getattr(row, column)
        if value is None or row.at <= since:
            continue
        if not writer.conditions_hold(rule, contexts[row.seq]):
            continue
        history = q.events_of_subject(conn, column, value, trigger.types, row.seq)
        history_ctx = writer.contexts(conn, rule, history)
        matching = [e for e in history if writer.conditions_hold(rule, history_ctx[e.seq])]
        if len(matching) != trigger.count:
            continue
        candidate = event_candidate(rule, row, row.at)
        candidate.key = f"{rule.id}|{trigger.per}:{value}"
        candidate.conditions_checked = True
        page.append(candidate)
    return page
