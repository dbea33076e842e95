"""The daemon: tick the rules and send the outbox until stopped, under systemd or not.

Each pass reads the clock once and runs the work steps in order: the rule engine (which
also marks overdue tasks, so rules chained on `task.overdue` fire in the same pass), then
the outbox sender when one is configured. Between passes it sleeps on a monotonic timer,
so a wall-clock jump neither wakes nor stalls it.

Signals: SIGHUP re-reads the rule files (a bad set is refused and the last good one keeps
running), SIGTERM and SIGINT stop after the transaction in flight. systemd hears READY=1,
WATCHDOG=1, RELOADING=1 and STOPPING=1 through crmd.daemon.notify.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import FrameType
from typing import Protocol

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from crmd.channels.sender import Sender
from crmd.daemon.clock import Clock
from crmd.daemon.instance import InstanceLock, lock_path
from crmd.daemon.notify import Notifier
from crmd.engine.evaluation import Engine
from crmd.engine.horizon import DailyCalendarCheck
from crmd.errors import CrmdError, RuleSetError
from crmd.rules.ruleset import load_rules
from crmd.site import Site
from crmd.store import heartbeats, watermarks
from crmd.store.database import Stopped, Store, StoreError, Unit

logger = logging.getLogger(__name__)

# A clock reading this far behind the previous tick's is reported as a backward jump.
CLOCK_SLACK = timedelta(seconds=2)
# A daemon's row in the `daemon` table not updated for this long is deleted when another
# daemon starts: `crmd status` has nothing to say about it any more.
FORGET_AFTER = timedelta(days=7)


class OutboxSender(Protocol):
    """The outbox sender as the daemon drives it (crmd.channels.sender.Sender, or a test's)."""

    def run_once(self, now: datetime) -> object: ...


@dataclass
class Config:
    """What a reload replaces as a whole: the compiled rules and the sender built from the
    channel files. Built completely before it is swapped in."""

    engine: Engine
    sender: OutboxSender | None = None


def load_config(site: Site, store: Store, env: Mapping[str, str] | None = None) -> Config:
    """Read and check the site's rule and channel files, and the channels' secrets (from
    `env`, by default the process's environment and systemd credentials).

    Raises RuleSetError (every problem as file:line:col) or another ConfigError.
    """
    engine = Engine(site, load_rules(site))
    # A daemon's new rule set (at start and at each reload) tries every failed fire once:
    # a fixed rule may now make them (crmd.store.ledger).
    engine.retried_all = False
    return Config(engine, Sender.for_site(site, store, env))


Step = Callable[[datetime], str]


class Daemon:
    """Runs the work steps every `interval` seconds until stopped."""

    def __init__(
        self,
        site: Site,
        store: Store,
        clock: Clock,
        *,
        dry_run: bool = False,
        interval: float = 30,
        notifier: Notifier | None = None,
        configure: Callable[[Site, Store], Config] = load_config,
    ) -> None:
        self.site = site
        self.store = store
        self.clock = clock
        self.dry_run = dry_run
        self.interval = interval
        self.notifier = notifier or Notifier()
        # Failed fires waiting to be fixed, as of the last tick (crmd.store.ledger).
        self.failed_pending = 0
        self.configure = configure
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        # Rules are checked before the first tick: a bad set stops the start, loudly.
        self.config = configure(site, store)
        # On PostgreSQL several daemons share the store, each with its own heartbeat row.
        self.id = f"{socket.gethostname()}:{site.root}"
        if not store.is_sqlite:
            self.id = f"{socket.gethostname()}:{os.getpid()}:{site.root}"
        self.started_at = clock.now()
        self._last: datetime | None = None
        self.last_error: str | None = None  # the last pass's store error, if it failed
        self.reload_error: str | None = None  # why the last reload was refused, until one works
        self._last_ping = time.monotonic()
        # Warns once a day of rules that soon need a calendar year not known (issue 14).
        self.calendar_check = DailyCalendarCheck()
        # When this daemon last showed progress (a pass began, a batch was committed): a
        # process running several sites feeds systemd's watchdog only while all progress.
        self.progressed = time.monotonic()

    @property
    def engine(self) -> Engine:
        return self.config.engine

    # ------------------------------------------------------------ signals

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Stop after the transaction in flight (SIGTERM, SIGINT)."""
        self._stop.set()
        self._wake.set()

    def request_reload(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        """Re-read the rule files before the next pass (SIGHUP)."""
        self._reload.set()
        self._wake.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.request_reload)

    # ------------------------------------------------------------ one pass

    def steps(self) -> list[tuple[str, Step]]:
        """The work of one pass, in order."""
        steps: list[tuple[str, Step]] = [("rules", self._tick_rules)]
        if self.config.sender is not None and not self.dry_run:
            steps.append(("sender", self._send))
        return steps

    def tick_once(self) -> bool:
        """One pass at the clock's `now`; False if a step failed (it is retried next pass)."""
        self.progressed = time.monotonic()
        now = self.clock.now()
        if self._last is not None and now < self._last - CLOCK_SLACK:
            logger.warning(
                "the clock went back by %s (from %s to %s); nothing fires again, rules wait "
                "until the clock passes where they were",
                self._last - now,
                self._last.isoformat(),
                now.isoformat(),
            )
        if self.last_error is not None:
            # Fresh connections after a failure: one opened while the file was read-only
            # stays read-only after the cause is cleared.
            self.store.dispose()
        started = time.monotonic()
        ok = True
        for name, step in self.steps():
            if self._stop.is_set():
                break
            try:
                summary = step(now)
            except StoreError as exc:
                # A locked, full or read-only store: nothing of the failed transaction was
                # saved. Keep running and try again next pass; the cause may clear.
                ok = False
                self.last_error = str(exc)
                logger.error("%s step failed, will retry: %s", name, exc)
            except Stopped:
                logger.info("%s step stopped between transactions", name)
                break
            else:
                if summary:
                    logger.info("%s: %s", name, summary)
        if ok:
            self.last_error = None
        if self._last is None or now > self._last:
            self._last = now
        self._heartbeat("running", now, time.monotonic() - started)
        return ok

    def _tick_rules(self, now: datetime) -> str:
        with Unit(self.store, dry_run=self.dry_run, should_stop=self._between_batches) as unit:
            # A dry run writes nothing, so it evaluates the window since its previous tick.
            start = self._last if self.dry_run else None
            report = self.engine.tick(unit, now, window_start=start)
        for error in report.errors:
            logger.error("%s", error)
        if report.failed_pending != self.failed_pending:
            # Said once when it changes, and kept in systemd's status line meanwhile.
            self.failed_pending = report.failed_pending
            if report.failed_pending:
                logger.warning(
                    "%d failed fire(s) pending: customers owed work that could not be done; "
                    "`crmd fires --failed` says why and what to fix",
                    report.failed_pending,
                )
            self.notifier.status(self._status_text())
        self.calendar_check.maybe_warn(self.engine.rules, self.site, now)
        fired, late, skipped = report.count("fired"), report.late_fired, report.count("skipped")
        failed = report.count("failed")
        if not (report.count() or report.overdue_count or report.errors) and not self.dry_run:
            return ""
        return (
            f"tick at {now.isoformat()}: {fired} fired ({late} late), {skipped} skipped as too "
            f"late, {failed} failed, {report.overdue_count} overdue"
            + (" (dry run, nothing written)" if self.dry_run else "")
        )

    def _send(self, now: datetime) -> str:
        """One pass of the outbox sender. It logs its own pass when it sent, retried, held or
        gave up on something; a pass with nothing to send stays out of the log.

        The sender reads the clock again: its claims carry their time, and the rules step
        before it may have taken minutes of a catch-up."""
        if self.config.sender is not None:
            self.config.sender.run_once(max(now, self.clock.now()))
        return ""

    def _between_batches(self) -> bool:
        """Asked before each transaction of a tick: whether to stop. A long catch-up keeps
        feeding the watchdog here, since each committed batch is progress."""
        self.progressed = time.monotonic()
        interval = self.notifier.watchdog_interval
        if interval is not None and time.monotonic() - self._last_ping >= interval:
            self._ping()
        return self._stop.is_set()

    def _ping(self) -> None:
        self.notifier.watchdog()
        self._last_ping = time.monotonic()

    def _heartbeat(self, state: str, now: datetime | None, seconds: float | None) -> None:
        """Record this daemon's state for `crmd status`; a store failure here is only logged."""
        if self.dry_run:
            return
        values = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "state": state,
            "started_at": self.started_at,
            "rules": len(self.engine.rules),
            "last_error": self.last_error or self.reload_error,
            "updated_at": self.clock.now(),
        }
        if now is not None:
            values.update(last_tick_at=now, last_tick_seconds=seconds)
        try:
            with self.store.write() as conn:
                heartbeats.save_heartbeat(conn, self.id, **values)
        except StoreError as exc:
            logger.debug("heartbeat not saved: %s", exc)

    def _forget_old_daemons(self) -> None:
        """Each daemon on PostgreSQL has a row of its own (its pid is in the id): at start,
        delete those of daemons long gone, so they do not pile up over the years."""
        if self.dry_run:
            return
        try:
            with self.store.write() as conn:
                forgotten = heartbeats.forget_heartbeats(
                    conn, self.clock.now() - FORGET_AFTER, self.id
                )
        except StoreError as exc:
            logger.debug("old heartbeats not deleted: %s", exc)
            return
        if forgotten:
            logger.info(
                "forgot %d daemon(s) not heard from in %d days", forgotten, FORGET_AFTER.days
            )

    # ------------------------------------------------------------ reload

    def reload(self) -> bool:
        """Load the site's files again; keep the running set if the new one has errors."""
        self.notifier.reloading()
        try:
            config = self.configure(self.site, self.store)
        except RuleSetError as exc:
            for error in exc.errors:
                logger.error("%s", error)
            logger.error(
                "reload refused: %d error(s) in the rule or channel files; still running the "
                "last good set of %d rules",
                len(exc.errors),
                len(self.engine.rules),
            )
            self.reload_error = (
                f"reload refused: {len(exc.errors)} error(s) in the rule or channel files"
            )
            return False
        except CrmdError as exc:
            logger.error("reload refused: %s; still running the last good set", exc)
            self.reload_error = f"reload refused: {exc}"
            return False
        except Exception as exc:  # a bad rule set never stops the daemon (issue 14, 7b)
            logger.exception(
                "reload refused: checking the files failed unexpectedly (%s: %s), a fault in "
                "crmd worth reporting; still running the last good set",
                type(exc).__name__,
                exc,
            )
            self.reload_error = f"reload refused: {type(exc).__name__}: {exc}"
            return False
        finally:
            self.notifier.ready(self._status_text())
        old, self.config = self.config, config
        close = getattr(old.sender, "close", None)
        if close is not None and old.sender is not config.sender:
            close()  # the old channels' connections (SMTP) go with the old settings
        self.reload_error = None
        self.calendar_check.forget()  # the new rules may need other years
        logger.info("reloaded: %d rules", len(self.engine.rules))
        return True

    def _status_text(self) -> str:
        failed = f", {self.failed_pending} failed fires" if self.failed_pending else ""
        return f"{len(self.engine.rules)} rules, store {self.store.where}{failed}"

    # ------------------------------------------------------------ the loop

    def announce_start(self) -> None:
        """Say in the log and the store that this daemon runs (before its first pass)."""
        logger.info(
            "crmd running: site %s, store %s, %d rules, every %ss",
            self.site.root,
            self.store.where,
            len(self.engine.rules),
            self.interval,
        )
        self._log_catch_up()
        self._heartbeat("running", None, None)
        self._forget_old_daemons()

    def announce_stop(self) -> None:
        """Record in the store that this daemon stopped (after its last pass)."""
        self._heartbeat("stopped", None, None)
        logger.info("crmd stopped: site %s", self.site.root)

    def run(self, *, once: bool = False) -> None:
        if threading.current_thread() is threading.main_thread():
            self.install_signal_handlers()
        self.announce_start()
        self.notifier.ready(self._status_text())
        watchdog = self.notifier.watchdog_interval
        wait = self.interval if watchdog is None else min(self.interval, watchdog)
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set():
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                if time.monotonic() >= next_tick:
                    self.tick_once()
                    next_tick = time.monotonic() + self.interval
                    if once:
                        break
                self._ping()
                self._wake.clear()
                if not (self._stop.is_set() or self._reload.is_set()):
                    self._wake.wait(max(0.0, min(wait, next_tick - time.monotonic())))
        finally:
            self.notifier.stopping()
            self.announce_stop()

    def _log_catch_up(self) -> None:
        """Say so when the daemon starts behind: the first pass fires what fell due, late."""
        try:
            with self.store.read() as conn:
                oldest = watermarks.oldest_watermark(conn, [r.id for r in self.engine.rules])
        except SQLAlchemyError:  # only a log line; the first tick reports store trouble
            return
        now = self.clock.now()
        if oldest is not None and now - oldest > timedelta(minutes=15):
            logger.warning(
                "catching up: rules were last evaluated up to %s (%s ago); what fell due "
                "since fires now, marked late, or is skipped where a rule says it is too late",
                oldest.isoformat(),
                now - oldest,
            )


def serve(
    site: Site,
    clock: Clock,
    open_store: Callable[[], Store],
    *,
    dry_run: bool = False,
    interval: float = 30,
    once: bool = False,
    configure: Callable[[Site, Store], Config] = load_config,
) -> None:
    """`crmd run`: take the store's lock, open it, check the rules, and run until stopped.

    The lock file (one daemon per store) is for SQLite stores; several daemons may share a
    PostgreSQL store (crmd.store.sharing).
    """
    lock = None
    if not dry_run and make_url(site.store_url).get_backend_name() == "sqlite":
        lock = InstanceLock(lock_path(site))
        lock.acquire()  # before migrating: a second daemon must not touch the schema
    try:
        daemon = Daemon(
            site, open_store(), clock, dry_run=dry_run, interval=interval, configure=configure
        )
        daemon.run(once=once)
    finally:
        if lock is not None:
            lock.release()
