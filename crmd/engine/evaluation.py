"""The evaluator: turns rules, the store and `now` into fires, exactly once.

Each rule keeps a watermark W (fires up to W are done) and an event cursor S (events up to
S have been looked at). A tick at `now` does, per rule:

1. late arrivals and counting: events recorded after S whose fire time is at or before W
   (an import of last week's deliveries), and the Nth-event counts, in arrival order;
2. due fires: fires whose time lies in (W, now], found by a range query on the events'
   time index (an offset rule's fire time is monotone in the event time), or by walking a
   calendar schedule or the birthdays of each day in the window.

The Engine here runs the tick: its rounds, each rule's turn and trouble, a plan that stops
where the calendar does. Event rules' phases are in crmd.engine.event_rules; a page's new
fires are written by crmd.engine.new_fires; crmd.engine.retries, rule_starts and overdue
hold the retries of failed fires, where a rule starts and resumes, and overdue tasks.

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
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime

from crmd.engine.actions import ActionWriter
from crmd.engine.candidates import Candidate, annual_pages, date_pages, schedule_pages
from crmd.engine.event_rules import evaluate_event_rule
from crmd.engine.horizon import Stop, first_failure
from crmd.engine.new_fires import apply_fires
from crmd.engine.overdue import mark_overdue
from crmd.engine.paging import Page, PageSizer, page_transaction
from crmd.engine.report import FireRecord, TickReport
from crmd.engine.retries import retry_failed
from crmd.engine.rule_errors import clear_failure, failing_rules, record_failure
from crmd.engine.rule_starts import (
    comes_into_force,
    fingerprint,
    first_watermark,
    resume_after_change,
)
from crmd.engine.triggers import TICK
from crmd.errors import CalendarNotPublished, CrmdError
from crmd.rules.rule import DateTrigger, EventTrigger, Rule, RuleSet, ScheduleTrigger
from crmd.site import Site
from crmd.store import ledger, watermarks
from crmd.store import queries as q
from crmd.store.database import NOT_THE_RULES, Unit
from crmd.store.pages import PAGE
from crmd.store.sharing import START_KEY, RuleLocks, lock_for_transaction

logger = logging.getLogger(__name__)

# Chained rules (a task event triggering another rule) settle within a few rounds.
MAX_ROUNDS = 8
# The page sizer's key for marking tasks overdue (rule ids are its other keys).
OVERDUE_PAGES = "(overdue)"
# ... and for trying failed fires again.
RETRY_PAGES = "(retry)"


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
        """Try again failed fires (crmd.engine.retries): those whose customer or vehicle
        changed since their last try, or `every` one, or those of `ids`. Returns the events
        they produced."""
        return retry_failed(
            lambda: self._page(unit, report, RETRY_PAGES),
            self.writer,
            self.rules,
            now,
            report,
            every=every,
            ids=ids,
        )

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
                start = comes_into_force(rule, now) if since is None else since
                watermark = first_watermark(rule, start, now, day_one=day_one)
                watermarks.create_rule_state(
                    conn, rule.id, start, max_seq, now, fingerprint(rule), watermark
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

    # ------------------------------------------------------------ evaluation

    def _evaluate(self, unit: Unit, rule: Rule, now: datetime, report: TickReport) -> int:
        with unit.batch() as conn:
            state = watermarks.load_rule_state(conn, rule.id)
            seq_upto = q.max_event_seq(conn)
        watermark, seq_from, since = state.watermark, state.event_seq, state.since
        trigger = rule.trigger
        if fingerprint(rule) != state.trigger:
            watermark = self._trigger_changed(unit, rule, state.trigger, watermark, since, now)
        # Watermarks never go back: when the clock does (NTP), nothing fires again until
        # it passes the watermark.
        if watermark >= now and seq_from >= seq_upto:
            return 0
        if isinstance(trigger, EventTrigger):
            return evaluate_event_rule(
                unit,
                lambda: self._page(unit, report, rule.id),
                self.writer,
                self.site,
                rule,
                trigger,
                now,
                report,
                watermark=watermark,
                since=since,
                seq_from=seq_from,
                seq_upto=seq_upto,
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
                produced += apply_fires(txn, self.writer, rule, page, now, report, since)
                # Done up to just before this page's last fire time: the next page may hold
                # more fires at that very time (many customers due the same day), and a stop
                # or crash between the pages must not leave them behind. The ledger drops
                # the ones this page made if that time is evaluated again.
                done_upto = page[-1].fire_at - TICK
                watermarks.save_rule_state(txn.conn, rule.id, done_upto, seq_upto, now)
        with unit.batch() as conn:
            watermarks.save_rule_state(conn, rule.id, max(watermark, now), seq_upto, now)
        return produced

    def _trigger_changed(
        self, unit: Unit, rule: Rule, old: str, watermark: datetime, since: datetime, now: datetime
    ) -> datetime:
        """Note a changed schedule; returns where its evaluation resumes: a once-a-day
        schedule whose time moved walks its watermark's day again
        (crmd.engine.rule_starts.resume_after_change)."""
        new = fingerprint(rule)
        resume = watermark
        walked_again = resume_after_change(rule, watermark, since, self.site.timezone)
        if old and walked_again is not None:
            resume = walked_again
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

    # ------------------------------------------------------------ pages

    def _page_rows(self, key: str) -> int:
        """How many rows the next page for `key` (a rule's id) may take."""
        return self.pages.size(key, self.page_size)

    def _page(self, unit: Unit, report: TickReport, key: str) -> AbstractContextManager[Page]:
        """One page's transaction for `key` (crmd.engine.paging); its fires are reported once
        it has committed."""
        return page_transaction(
            unit, self.pages, self.page_size, key, lambda fires: self._report(report, fires)
        )

    def _report(self, report: TickReport, fires: list[FireRecord]) -> None:
        """Report (and log) the fires of the transaction just committed."""
        log = logger.isEnabledFor(logging.INFO)
        for record in fires:
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

    def _mark_overdue(self, unit: Unit, now: datetime, report: TickReport) -> int:
        """Open tasks past their due time become overdue (crmd.engine.overdue); returns how
        many did."""
        total = 0
        for marked in mark_overdue(lambda: self._page(unit, report, OVERDUE_PAGES), now):
            report.add_overdue([r.id for r in marked])
            for r in marked:
                logger.info(
                    "task %s overdue (%s)",
                    r.id,
                    r.rule_id,
                    extra={"rule": r.rule_id, "task": r.id},
                )
            total += len(marked)
        return total
