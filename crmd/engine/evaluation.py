"""The evaluator: turns rules, the store and `now` into fires, exactly once.

Each rule keeps a watermark W (fires up to W are done) and an event cursor S (events up to
S have been looked at). A tick at `now` does, per rule:

1. late arrivals and counting: events recorded after S whose fire time is at or before W
   (an import of last week's deliveries), and the Nth-event counts, in arrival order;
2. due fires: fires whose time lies in (W, now], found by a range query on the events'
   time index (an offset rule's fire time is monotone in the event time), or by walking a
   calendar schedule or the birthdays of each day in the window.

Work is committed in pages, sized by how long earlier pages took (crmd.engine.paging). Each
page's ledger rows (unique key per fire), tasks, outbox rows, task events and the advanced
W/S commit in one transaction: a crash repeats at most the page in flight, and the ledger
key drops what was already done. A page that fires for every customer (`for_each:
customer`) commits its fires a part of the customers at a time and advances W/S with the
last part only, so a crash between parts repeats the page the same way. The cost of a tick
follows what is due and what arrived, not the size of the store.

Daemons sharing a PostgreSQL store evaluate each rule one at a time: a rule's whole
evaluation holds its advisory lock (crmd.store.sharing), and a daemon finding it busy skips it.

The engine never reads the clock: `now` is an argument, so `tick`, `--now` and `plan` all
drive this same code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Row

from crmd.calendar.schedules import once_a_day
from crmd.engine.actions import ActionWriter
from crmd.engine.candidates import (
    Candidate,
    annual_pages,
    date_pages,
    event_candidate,
    fan_out,
    schedule_pages,
)
from crmd.engine.horizon import Stop, first_failure
from crmd.engine.paging import Page, PageSizer
from crmd.engine.report import FireRecord, TickReport
from crmd.engine.rule_errors import clear_failure, failing_rules, record_failure
from crmd.engine.takeover import reach
from crmd.engine.triggers import event_fire_time, event_span
from crmd.errors import CalendarNotPublished, CrmdError
from crmd.events import TASK_OVERDUE
from crmd.rules.rule import DateTrigger, EventTrigger, Rule, RuleSet, ScheduleTrigger
from crmd.site import Site
from crmd.store import ledger, watermarks, work
from crmd.store import queries as q
from crmd.store.database import NOT_THE_RULES, Unit
from crmd.store.gcpause import collector_paused
from crmd.store.pages import PAGE
from crmd.store.sharing import START_KEY, RuleLocks, lock_for_transaction

logger = logging.getLogger(__name__)

# A fire recorded more than this after its time is marked late (the daemon was down, or
# the event arrived late).
LATE_AFTER = timedelta(minutes=15)
# Chained rules (a task event triggering another rule) settle within a few rounds.
MAX_ROUNDS = 8
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
TICK = timedelta(microseconds=1)
# The page sizer's key for marking tasks overdue (rule ids are its other keys).
OVERDUE_PAGES = "(overdue)"
# ... and for trying failed fires again.
RETRY_PAGES = "(retry)"
# Events share times (a day's deliveries, an import's dates) and an event's fire time is a
# pure function of its trigger, time, zone and calendar: each is worked out once. Event
# times come from the store in UTC, where equal times are the same instant.
_event_fire_time = lru_cache(maxsize=4096)(event_fire_time)


class Engine:
    """Evaluates one rule set for one site."""

    def __init__(self, site: Site, ruleset: RuleSet) -> None:
        self.site = site
        self.ruleset = ruleset
        self.rules = ruleset.enabled()
        self.writer = ActionWriter(site)
        # The most rows read and fires committed per transaction (small in crash tests);
        # `pages` sizes each page below that by how long the rule's earlier pages took.
        self.page_size = PAGE
        self.pages = PageSizer()
        self._locks: RuleLocks | None = None
        # Whether this rule set has tried every failed fire once; a daemon's new rule set sets
        # it False, so its first tick does (one-off commands retry only what changed).
        self.retried_all = True
        # Failed fires in the store as of this engine's last tick (None: not counted yet): a
        # tick after one that found none skips looking for fires to retry.
        self._failed_known: int | None = None
        # Fires of the page in flight, reported when its transaction commits.
        self._staged: list[FireRecord] = []
        # The rules recorded as failing when the tick began (crmd.engine.rule_errors).
        self._failing: set[str] = set()

    # ------------------------------------------------------------ entry points

    def tick(
        self,
        unit: Unit,
        now: datetime,
        *,
        window_start: datetime | None = None,
        late_as_of: datetime | None = None,
        on_fire: Callable[[FireRecord], None] | None = None,
        up_to_stops: bool = False,
    ) -> TickReport:
        """One evaluation pass at `now`; running it twice at the same `now` changes nothing.

        `window_start` (for `plan`) evaluates every rule as if its watermark were there;
        `late_as_of` (for `plan`, the real clock) judges lateness as if each fire were written
        at its own time or at `late_as_of`, whichever comes later. `on_fire` sees every fire
        as it is made; the report keeps counts and a sample (crmd.engine.report). `up_to_stops`
        (for `plan`, in a dry run) evaluates a rule that needs a calendar year not known up
        to where it stops, and says so in `report.stops`, instead of failing it.
        """
        if now.tzinfo is None:
            raise ValueError("tick needs an aware `now`")
        now = now.astimezone(UTC)
        report = TickReport(now=now, late_as_of=late_as_of, on_fire=on_fire)
        # A plan into the future of a store never evaluated starts its rules where a tick
        # would, at the real clock (`late_as_of`), not at the plan's end.
        started = min(now, late_as_of.astimezone(UTC)) if late_as_of is not None else now
        self._prepare_states(unit, started, window_start)
        failing = self._failing
        failed: set[str] = set()
        for round_no in range(1, MAX_ROUNDS + 1):
            report.rounds = round_no
            produced = 0
            if round_no == 1 and (not self.retried_all or self._failed_known != 0):
                # A new rule set tries every failed fire once; later ticks those whose
                # customer or vehicle has changed since (crmd.store.ledger).
                produced += self.retry_failed(unit, now, report, every=not self.retried_all)
                self.retried_all = True
            for rule in self.rules:
                if rule.id in failed:
                    continue
                try:
                    with self._claim(unit, rule) as mine:
                        # Not mine: another daemon on this store is evaluating it now.
                        if mine:
                            produced += self._evaluate(unit, rule, now, report)
                            if rule.id in failing:
                                clear_failure(unit, rule.id)
                                failing.discard(rule.id)
                except NOT_THE_RULES:
                    raise  # the store's or the machine's trouble: the whole tick stops
                except Exception as exc:
                    # One rule's trouble (say, an unpublished calendar year) must not stop
                    # the others; its watermark stays put, so it retries next tick.
                    failed.add(rule.id)
                    if up_to_stops and unit.dry_run and isinstance(exc, CalendarNotPublished):
                        # A plan lists what the rule does up to there (report.stops).
                        produced += self._plan_up_to_stop(unit, rule, now, report, exc)
                        continue
                    report.errors.append(f"rule {rule.id}: {exc}")
                    record_failure(unit, rule.id, str(exc), now)
                    logger.error(
                        "rule %s failed: %s",
                        rule.id,
                        exc,
                        exc_info=not isinstance(exc, CrmdError),
                        extra={"rule": rule.id},
                    )
            produced += self._mark_overdue(unit, now, report)
            if not produced:
                break
        with unit.batch() as conn:
            report.failed_pending = ledger.count_failed(conn)
        self._failed_known = report.failed_pending
        return report

    def retry_failed(
        self,
        unit: Unit,
        now: datetime,
        report: TickReport,
        *,
        every: bool = False,
        ids: Sequence[int] = (),
    ) -> int:
        """Try again failed fires: those whose customer or vehicle changed since their last
        try, or `every` one, or those of `ids`. Returns the events they produced.

        A retried fire updates its own ledger row (crmd.store.ledger), so it still happens once.
        A fire whose rule is gone or disabled stays failed, for `crmd fires dismiss`.
        """
        by_id = {r.id: r for r in self.rules}
        produced = 0
        after = 0
        while True:
            with self._page(unit, report, RETRY_PAGES) as txn:
                rows = ledger.failed_to_retry(
                    txn.conn, after_id=after, limit=txn.size, every=every, ids=ids
                )
                txn.rows = len(rows)
                if not rows:
                    return produced
                after = rows[-1].id
                anchors = ledger.events_by_seq(txn.conn, (r.event_seq for r in rows if r.event_seq))
                states = watermarks.load_rule_states(txn.conn)
                retrying: dict[str, int] = {}
                by_rule: dict[str, list[Candidate]] = {}
                for row in rows:
                    rule = by_id.get(row.rule_id)
                    if rule is None or row.rule_id not in states:
                        continue
                    candidate = Candidate(
                        rule,
                        row.key,
                        row.fire_at,
                        row.subject,
                        customer_id=row.customer_id,
                        vehicle_id=row.vehicle_id,
                        event=anchors.get(row.event_seq),
                    )
                    # A count's conditions held over the whole history when it was found.
                    candidate.conditions_checked = getattr(rule.trigger, "count", None) is not None
                    by_rule.setdefault(rule.id, []).append(candidate)
                    retrying[row.key] = row.id
                for rule_id, candidates in by_rule.items():
                    try:
                        records, made = self.writer.write(
                            txn.conn,
                            by_id[rule_id],
                            candidates,
                            now,
                            report.late_as_of or now,
                            LATE_AFTER,
                            # Not taken over again: it was owed when it failed, and is
                            # made however late, as any late fire.
                            retrying=retrying,
                        )
                    except CalendarNotPublished:
                        # Raised before the write wrote anything: these stay failed, and
                        # the rule's own evaluation reports the calendar (below).
                        continue
                    report.retried += len(records)
                    self._staged.extend(records)
                    produced += made
            if len(rows) < txn.size:
                return produced

    def _plan_up_to_stop(
        self,
        unit: Unit,
        rule: Rule,
        now: datetime,
        report: TickReport,
        failed: CalendarNotPublished,
    ) -> int:
        """In a plan, a rule that needs a calendar year not known goes as far as it can.

        Its evaluation is tried up to earlier times (crmd.engine.horizon.first_failure) until the
        first minute it fails at is found: its fires before that are in the plan, and
        `report.stops` says where it stopped and why. Returns the events it produced.
        """
        with unit.batch() as conn:
            start = watermarks.load_rule_state(conn, rule.id).watermark
        produced = 0

        def attempt(upto: datetime) -> CalendarNotPublished | None:
            nonlocal produced
            try:
                produced += self._evaluate(unit, rule, upto, report)
            except CalendarNotPublished as exc:
                return exc
            return None

        at, error = first_failure(start, now, attempt, failed)
        report.stops[rule.id] = Stop(at, error.year, str(error))
        return produced

    def _claim(self, unit: Unit, rule: Rule) -> AbstractContextManager[bool]:
        """This process's turn at a rule (always, on SQLite or in a dry run)."""
        if unit.dry_run:
            return nullcontext(True)
        if self._locks is None or self._locks.store is not unit.store:
            self._locks = RuleLocks(unit.store)
        return self._locks.hold(rule.id)

    # ------------------------------------------------------------ rule state

    def _prepare_states(self, unit: Unit, now: datetime, window_start: datetime | None) -> None:
        self.start_rules(unit, now)
        if window_start is not None:
            with unit.batch() as conn:
                max_seq = q.max_event_seq(conn)
                for rule in self.rules:
                    watermarks.save_rule_state(conn, rule.id, window_start, max_seq, now)

    def start_rules(self, unit: Unit, now: datetime, since: datetime | None = None) -> list[str]:
        """Give every rule seen for the first time its state; returns their ids.

        A new rule starts at `now` (or `since`) and so does not fire for history, unless
        it asks for a backfill.
        """
        started = []
        with unit.batch() as conn:
            lock_for_transaction(conn, START_KEY)  # daemons starting together take turns
            states = watermarks.load_rule_states(conn)
            # Day one: no rule of this store has ever been evaluated (crmd.engine.takeover).
            day_one = not states and since is None
            self._failing = failing_rules(conn, states, self.rules)
            max_seq = q.max_event_seq(conn)
            for rule in self.rules:
                if rule.id in states:
                    continue
                start = self._first_since(rule, now) if since is None else since
                watermark = start
                if day_one and rule.backfill is None:
                    span = reach(rule)
                    watermark = EPOCH if span is None else max(EPOCH, now - span)
                watermarks.create_rule_state(
                    conn, rule.id, start, max_seq, now, _fingerprint(rule), watermark
                )
                started.append(rule.id)
                logger.info(
                    "new rule %s starts at %s%s",
                    rule.id,
                    start.isoformat(),
                    f", taking over what is still due since {watermark.isoformat()}"
                    if watermark < start
                    else "",
                    extra={"rule": rule.id},
                )
        return started

    def _first_since(self, rule: Rule, now: datetime) -> datetime:
        """When a rule seen for the first time comes into force: now, unless it asks for a
        backfill (then its fires in the backfill's span are due as any other)."""
        if rule.backfill is None:
            return now
        if rule.backfill.span is not None:
            return now - rule.backfill.span
        return EPOCH

    # ------------------------------------------------------------ evaluation

    def _evaluate(self, unit: Unit, rule: Rule, now: datetime, report: TickReport) -> int:
        with unit.batch() as conn:
            state = watermarks.load_rule_state(conn, rule.id)
            seq_upto = q.max_event_seq(conn)
        watermark, seq_from, since = state.watermark, state.event_seq, state.since
        trigger = rule.trigger
        fingerprint = _fingerprint(rule)
        if fingerprint != state.trigger:
            watermark = self._trigger_changed(unit, rule, state.trigger, watermark, since, now)
        # Watermarks never go back: when the clock does (NTP), nothing fires again until
        # it passes the watermark.
        if watermark >= now and seq_from >= seq_upto:
            return 0
        if isinstance(trigger, EventTrigger):
            return self._evaluate_events(
                unit, rule, trigger, now, watermark, since, seq_from, seq_upto, report
            )
        pages: Iterator[list[Candidate]]

        def rows() -> int:
            return self._page_rows(rule.id)

        if isinstance(trigger, ScheduleTrigger):
            pages = schedule_pages(rule, trigger, self.site.timezone, watermark, now, rows)
        elif isinstance(trigger, DateTrigger):
            pages = date_pages(unit, rule, trigger, self.site, watermark, now, rows)
        else:
            pages = annual_pages(unit, rule, trigger, self.site.timezone, watermark, now, rows)
        produced = 0
        for page in pages:
            with self._page(unit, report, rule.id) as txn:
                txn.rows = len(page)
                produced += self._apply(txn, rule, page, now, report, since)
                # Done up to just before this page's last fire time: the next page may hold
                # more fires at that very time (many customers due the same day), and a stop
                # or crash between the pages must not leave them behind. The ledger drops
                # the ones this page made if that time is evaluated again.
                done_upto = page[-1].fire_at - TICK
                watermarks.save_rule_state(txn.conn, rule.id, done_upto, seq_upto, now)
        with unit.batch() as conn:
            watermarks.save_rule_state(conn, rule.id, max(watermark, now), seq_upto, now)
        return produced

    def _evaluate_events(
        self,
        unit: Unit,
        rule: Rule,
        trigger: EventTrigger,
        now: datetime,
        watermark: datetime,
        since: datetime,
        seq_from: int,
        seq_upto: int,
        report: TickReport,
    ) -> int:
        tz, cal = self.site.timezone, self.site.calendar
        low, high = event_span(trigger)
        produced = 0
        # Phase 1: events recorded since the last look (late arrivals, counting).
        late_upto = None if trigger.count is not None else watermark - low
        span = reach(rule)
        history_from = EPOCH if span is None else since - span
        cursor = seq_from
        while cursor < seq_upto:
            with self._page(unit, report, rule.id) as txn:
                rows = q.events_recorded_between(
                    txn.conn, trigger.types, cursor, seq_upto, late_upto, txn.size
                )
                txn.rows = len(rows)
                # Where the next page starts; the rule's state saves it with this page's
                # last part (txn.conn after _apply).
                cursor = rows[-1].seq if len(rows) == txn.size else seq_upto
                if trigger.count is not None:
                    page = self._count_candidates(txn.conn, rule, trigger, rows, since)
                else:
                    # An event recorded after its rule came into force always gets its fire,
                    # however late it was keyed in; one that fell due before (history keyed
                    # in later) gets what is still of use of it (crmd.engine.takeover).
                    page = []
                    for row in rows:
                        fire_at = _event_fire_time(trigger, row.at, tz, cal)
                        if history_from < fire_at <= watermark:
                            page.append(event_candidate(rule, row, fire_at))
                produced += self._apply(txn, rule, page, now, report, since)
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
            with self._page(unit, report, rule.id) as txn:
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
                produced += self._apply(txn, rule, page, now, report, since)
                if done:
                    watermarks.save_rule_state(
                        txn.conn, rule.id, max(watermark, now), seq_upto, now
                    )
                else:
                    # Everything before the last fire time of this page is done.
                    last = _event_fire_time(trigger, rows[-1].at, tz, cal)
                    watermark = max(watermark, min(last - TICK, now))
                    page_cursor = (rows[-1].at, rows[-1].seq)
                    watermarks.save_rule_state(txn.conn, rule.id, watermark, seq_upto, now)
        return produced

    def _count_candidates(
        self,
        conn: Connection,
        rule: Rule,
        trigger: EventTrigger,
        rows: Sequence[Row[Any]],
        since: datetime,
    ) -> list[Candidate]:
        """Candidates for the Nth matching event per subject (P4: three failed attempts)."""
        column = {"customer": "customer_id", "vehicle": "vehicle_id", "task": "task_id"}[
            trigger.per
        ]
        contexts = self.writer.contexts(conn, rule, rows)
        page: list[Candidate] = []
        for row in rows:
            value = getattr(row, column)
            if value is None or row.at <= since:
                continue
            if not self.writer.conditions_hold(rule, contexts[row.seq]):
                continue
            history = q.events_of_subject(conn, column, value, trigger.types, row.seq)
            history_ctx = self.writer.contexts(conn, rule, history)
            matching = [e for e in history if self.writer.conditions_hold(rule, history_ctx[e.seq])]
            if len(matching) != trigger.count:
                continue
            candidate = event_candidate(rule, row, row.at)
            candidate.key = f"{rule.id}|{trigger.per}:{value}"
            candidate.conditions_checked = True
            page.append(candidate)
        return page

    def _trigger_changed(
        self, unit: Unit, rule: Rule, old: str, watermark: datetime, since: datetime, now: datetime
    ) -> datetime:
        """Note a changed schedule; returns where its evaluation resumes.

        A once-a-day schedule whose time moved (a reload, 10:00 -> 09:00 at 09:30) walks
        its watermark's day again, so the day's occurrence at the new time is not lost;
        the ledger's day key drops it if the day already fired.
        """
        new = _fingerprint(rule)
        resume = watermark
        trigger = rule.trigger
        if old and isinstance(trigger, ScheduleTrigger) and once_a_day(trigger.schedule):
            tz = self.site.timezone
            day_start = datetime.combine(watermark.astimezone(tz).date(), time(0), tz)
            resume = min(watermark, max(since, day_start.astimezone(UTC)))
            logger.info(
                "rule %s changed from %s to %s; today is evaluated again from %s",
                rule.id,
                old,
                new,
                resume.isoformat(),
                extra={"rule": rule.id},
            )
        with unit.batch() as conn:
            state = watermarks.load_rule_state(conn, rule.id)
            watermarks.save_rule_state(conn, rule.id, resume, state.event_seq, now, new)
        return resume

    # ------------------------------------------------------------ applying fires

    def _apply(
        self,
        txn: Page,
        rule: Rule,
        candidates: list[Candidate],
        now: datetime,
        report: TickReport,
        since: datetime | None = None,
    ) -> int:
        """Record the new fires of one page and run their actions, in the page's transaction.

        Fires at or before `since`, when the rule came into force, are taken over: only what
        is still of use of them is done (crmd.engine.takeover).

        A rule that fires for each customer writes a part of the customers at a time, each
        part but the last committed on its own (`txn.commit()`), so a greeting to every
        customer of a large store holds no more than a page of them; the caller saves the
        rule's progress in the last part only.

        Returns how many events this produced (task events), so chained rules get another round.
        """
        if not candidates:
            return 0
        if getattr(rule.trigger, "for_each", None) != "customer":
            return self._write_new(txn.conn, rule, candidates, now, report, since)
        produced = 0
        last = ""
        while True:
            per_part = max(1, txn.size // len(candidates))
            people = q.customers_page(txn.conn, last, per_part)
            part = fan_out(candidates, people)
            txn.rows = len(part)
            produced += self._write_new(txn.conn, rule, part, now, report, since)
            if len(people) < per_part:
                return produced
            last = people[-1].id
            txn.commit()

    def _write_new(
        self,
        conn: Connection,
        rule: Rule,
        candidates: list[Candidate],
        now: datetime,
        report: TickReport,
        since: datetime | None = None,
    ) -> int:
        """Write the fires of these candidates the ledger does not hold yet."""
        done = ledger.existing_fire_keys(conn, (c.key for c in candidates))
        fresh: dict[str, Candidate] = {}
        for c in candidates:
            if c.key not in done and c.key not in fresh:
                fresh[c.key] = c
        if not fresh:
            return 0
        history = self.writer.history
        records, produced = self.writer.write(
            conn,
            rule,
            list(fresh.values()),
            now,
            report.late_as_of or now,
            LATE_AFTER,
            taken_over_upto=since,
        )
        report.history += self.writer.history - history
        self._staged.extend(records)
        return produced

    def _page_rows(self, key: str) -> int:
        """How many rows the next page for `key` (a rule's id) may take."""
        return self.pages.size(key, self.page_size)

    @contextmanager
    def _page(self, unit: Unit, report: TickReport, key: str) -> Iterator[Page]:
        """One page's transaction; its fires are reported once it has committed.

        The caller takes at most `page.size` rows and says in `page.rows` how many it took;
        how long the transaction lasted sizes the next page for `key` (crmd.engine.paging). Work
        larger than a page calls `page.commit()` between its parts: each part is a
        transaction of its own, sized and reported the same way.
        """
        with ExitStack() as stack:
            started = 0.0

            def begin() -> Page:
                nonlocal started
                self._staged = []
                size = self._page_rows(key)
                started = self.pages.clock()
                stack.enter_context(collector_paused())
                return Page(stack.enter_context(unit.batch()), size)

            def end(txn: Page) -> None:
                stack.close()  # the transaction commits, the garbage collector resumes
                took = self.pages.clock() - started
                self.pages.observe(key, txn.size, txn.rows, took, self.page_size)
                self._report_staged(report)

            txn = begin()

            def commit() -> None:
                end(txn)
                fresh = begin()
                txn.conn, txn.size, txn.rows = fresh.conn, fresh.size, 0

            txn.commit = commit
            try:
                yield txn
            except BaseException:
                self._staged = []  # rolled back: nothing of it happened
                raise
            end(txn)

    def _report_staged(self, report: TickReport) -> None:
        """Report (and log) the fires of the transaction just committed."""
        log = logger.isEnabledFor(logging.INFO)
        for record in self._staged:
            report.add(record)
            if log:
                logger.info(
                    "fire %s %s %s at %s%s",
                    record.status,
                    record.rule_id,
                    record.subject,
                    record.fire_at.isoformat(),
                    " (late)" if record.late else "",
                    extra={"rule": record.rule_id, "subject": record.subject},
                )
        self._staged = []

    def _mark_overdue(self, unit: Unit, now: datetime, report: TickReport) -> int:
        """Open tasks past their due time become overdue, once, as a `task.overdue` event.

        A page of tasks at a time, each page its own transaction, so a catch-up that finds a
        hundred thousand tasks overdue holds one page of them, not all.
        """
        total = 0
        cursor: tuple[datetime, int] | None = None
        while True:
            with self._page(unit, report, OVERDUE_PAGES) as txn:
                conn = txn.conn
                rows = work.tasks_falling_overdue(conn, now, cursor, txn.size)
                txn.rows = len(rows)
                if not rows:
                    return total
                cursor = (rows[-1].due_at, rows[-1].id)
                # Another daemon may have marked some since the read: their events are its own.
                marked = work.mark_tasks_overdue(conn, [r.id for r in rows])
                mine = [r for r in rows if r.id in marked]
                q.insert_events(
                    conn, [self.writer.task_event(r, TASK_OVERDUE, r.due_at, now) for r in mine]
                )
            report.add_overdue([r.id for r in mine])
            for r in mine:
                logger.info(
                    "task %s overdue (%s)",
                    r.id,
                    r.rule_id,
                    extra={"rule": r.rule_id, "task": r.id},
                )
            total += len(mine)
            if len(rows) < txn.size:
                return total


def _fingerprint(rule: Rule) -> str:
    """A schedule rule's schedule in words, stored with its state to notice a change."""
    trigger = rule.trigger
    return trigger.schedule.describe()[:300] if isinstance(trigger, ScheduleTrigger) else ""
