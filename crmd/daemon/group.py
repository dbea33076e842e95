"""A dealer group's sites in one daemon process: `crmd run --sites DIR`.

Every directory under DIR with a site.yaml is a site (one dealership), with its own rules,
channels and store: a file of its own on SQLite, or a schema of its own in the group's
PostgreSQL database (crmd.store.siteschema). One process runs a crmd.daemon.service.Daemon for each,
passing them to a few worker threads: each site ticks every `interval` seconds, as if it
ran alone, and its work, heartbeat, locks and `crmd status` are its own. One process for
the group instead of one per site saves the memory of an interpreter per site, and sites
in schemas of one PostgreSQL database share the process's sessions (about two per worker,
crmd.store.connections.SharedEngines) instead of keeping two each.

A site that cannot start (a bad site.yaml or rule file, a store that cannot be opened, a
SQLite store another daemon holds) is logged and left out; the others run. A site's
channel secrets come from its own `credentials/` directory when it has one (so each
dealership may have its own Twilio account and SMTP password), else from the process's
environment and systemd credentials. SIGHUP reloads every site's rules and channels (a bad
set is refused for that site alone), starts sites added to DIR or left out before, and
stops those removed. SIGTERM stops every site after its transaction in flight.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from sqlalchemy.engine import make_url

from crmd.daemon.clock import Clock, FixedClock
from crmd.daemon.health import site_directories
from crmd.daemon.instance import InstanceLock, lock_path
from crmd.daemon.logs import current_site
from crmd.daemon.notify import Notifier
from crmd.daemon.service import Config, Daemon, load_config
from crmd.errors import CrmdError
from crmd.site import Site, load_site
from crmd.store.connections import SharedEngines
from crmd.store.database import Store
from crmd.store.nowguard import refuse_going_back

logger = logging.getLogger(__name__)

# How often the loop looks for sites due to tick, at most (seconds).
LOOK_EVERY = 1.0


def load_group_config(site: Site, store: Store) -> Config:
    """A site's rules and channels; its secrets from its own `credentials/` directory when
    it has one (a file per credential, named as in docs/channels.md), else the process's."""
    own = site.root / "credentials"
    return load_config(site, store, {"CREDENTIALS_DIRECTORY": str(own)} if own.is_dir() else None)


@dataclass
class Member:
    """One site of the group: its daemon, the lock of its SQLite store, its pass in flight."""

    directory: Path
    daemon: Daemon
    lock: InstanceLock | None
    next_tick: float = 0.0  # time.monotonic() of its next pass
    running: Future[bool] | None = None
    reload_pending: bool = False

    @property
    def busy(self) -> bool:
        return self.running is not None and not self.running.done()


@dataclass
class GroupDaemon:
    """Runs every site under `root` until stopped."""

    root: Path
    clock: Clock
    interval: float = 30
    workers: int = 4
    dry_run: bool = False
    notifier: Notifier = field(default_factory=Notifier)
    configure: Callable[[Site, Store], Config] | None = None  # default: load_group_config
    members: dict[Path, Member] = field(default_factory=dict)
    failed: dict[Path, str] = field(default_factory=dict)  # sites left out, and why

    def __post_init__(self) -> None:
        # Sites in schemas of one PostgreSQL database share the process's sessions: about
        # two per worker stay open, not two per site.
        self.sessions = SharedEngines(keep=2 * self.workers, most=4 * self.workers + 4)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._wake = threading.Event()
        self._stalled: list[str] = []

    # ------------------------------------------------------------ signals

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        self._stop.set()
        for member in list(self.members.values()):
            member.daemon.stop()
        self._wake.set()

    def request_reload(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        self._reload.set()
        self._wake.set()

    # ------------------------------------------------------------ sites in and out

    def scan(self) -> None:
        """Start the sites under `root` not running yet; stop those no longer there."""
        present = site_directories(self.root)
        for directory in present:
            if directory not in self.members:
                self._start(directory)
        for directory in set(self.members) - set(present):
            self._finish(self.members.pop(directory))
            logger.info("site %s removed from %s: stopped", directory.name, self.root)
        for directory in set(self.failed) - set(present):
            del self.failed[directory]

    def _start(self, directory: Path) -> None:
        lock: InstanceLock | None = None
        store: Store | None = None
        try:
            site = load_site(directory)
            if not self.dry_run and make_url(site.store_url).get_backend_name() == "sqlite":
                lock = InstanceLock(lock_path(site))
                lock.acquire()
            store = Store.open(site.store_url, schema=site.store_schema, shared=self.sessions)
            if not self.dry_run and isinstance(self.clock, FixedClock):
                # A --now before this site's last tick would write into its past: the site
                # is left out, as one that cannot start (crmd.store.nowguard).
                with store.read() as conn:
                    refuse_going_back(conn, self.clock.now(), site.timezone, "crmd run --sites")
            daemon = Daemon(
                site,
                store,
                self.clock,
                dry_run=self.dry_run,
                interval=self.interval,
                notifier=Notifier({}),  # the group speaks to systemd, not each site
                configure=self.configure or load_group_config,
            )
        except CrmdError as exc:
            if store is not None:
                store.dispose()
            if lock is not None:
                lock.release()
            self.failed[directory] = str(exc)
            logger.error("site %s left out: %s", directory.name, exc)
            return
        self.failed.pop(directory, None)
        daemon.announce_start()
        self.members[directory] = Member(directory, daemon, lock, time.monotonic())

    def _finish(self, member: Member) -> None:
        member.daemon.stop()
        if member.running is not None:
            member.running.result()  # the pass in flight ends after its transaction
        member.daemon.announce_stop()
        member.daemon.store.dispose()
        if member.lock is not None:
            member.lock.release()

    def _reload_all(self) -> None:
        self.notifier.reloading()
        for member in self.members.values():
            member.reload_pending = True
        try:
            self.scan()
        except CrmdError as exc:  # the directory itself is gone or unreadable
            logger.error("cannot look for sites: %s; the running sites go on", exc)
        self.notifier.ready(self._status_text())

    def _status_text(self) -> str:
        left_out = f", {len(self.failed)} left out" if self.failed else ""
        return f"{len(self.members)} sites running{left_out}"

    # ------------------------------------------------------------ the loop

    def _feed_watchdog(self, interval: float | None) -> None:
        """Tell systemd the process is alive, unless a site's pass has shown no progress for
        twice the ping interval (the whole watchdog timeout): then systemd restarts the
        group, as it would restart a hung single-site daemon."""
        if interval is None:
            return
        now = time.monotonic()
        stalled = [
            m.directory.name
            for m in self.members.values()
            if m.busy and now - m.daemon.progressed > 2 * interval
        ]
        if not stalled:
            self.notifier.watchdog()
        elif stalled != self._stalled:
            logger.error("no progress in site(s) %s: not feeding the watchdog", ", ".join(stalled))
        self._stalled = stalled

    def _pass(self, member: Member) -> bool:
        """One pass of one site, in a worker thread; never raises."""
        token = current_site.set(member.directory.name)
        try:
            return member.daemon.tick_once()
        except Exception:  # a bug in one site's pass must not stop the group
            logger.exception("the pass failed")
            return False
        finally:
            current_site.reset(token)

    def run(self, *, once: bool = False) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
            signal.signal(signal.SIGHUP, self.request_reload)
        self.scan()
        if not self.members:
            reasons = "; ".join(f"{d.name}: {why}" for d, why in sorted(self.failed.items()))
            raise CrmdError(f"no site under {self.root} could start ({reasons or 'none found'})")
        logger.info(
            "crmd running %d site(s) of %s with %d worker(s), every %ss",
            len(self.members),
            self.root,
            self.workers,
            self.interval,
        )
        self.notifier.ready(self._status_text())
        watchdog = self.notifier.watchdog_interval
        look = LOOK_EVERY if watchdog is None else min(LOOK_EVERY, watchdog)
        passes: dict[Path, int] = {}
        with ThreadPoolExecutor(self.workers, thread_name_prefix="crmd-site") as pool:
            try:
                while not self._stop.is_set():
                    if self._reload.is_set():
                        self._reload.clear()
                        self._reload_all()
                    now = time.monotonic()
                    for member in self.members.values():
                        if member.busy or now < member.next_tick:
                            continue
                        if member.reload_pending:
                            member.reload_pending = False
                            token = current_site.set(member.directory.name)
                            try:
                                member.daemon.reload()
                            finally:
                                current_site.reset(token)
                        member.next_tick = now + self.interval
                        member.running = pool.submit(self._pass, member)
                        member.running.add_done_callback(lambda _: self._wake.set())
                        passes[member.directory] = passes.get(member.directory, 0) + 1
                    self._feed_watchdog(watchdog)
                    if once and all(passes.get(d) and not m.busy for d, m in self.members.items()):
                        break
                    self._wake.clear()
                    if not (self._stop.is_set() or self._reload.is_set()):
                        self._wake.wait(look)
            finally:
                self.notifier.stopping()
                for member in self.members.values():
                    member.daemon.stop()
                for member in list(self.members.values()):
                    self._finish(member)
                self.sessions.dispose()
                logger.info("crmd stopped: %d site(s)", len(self.members))
