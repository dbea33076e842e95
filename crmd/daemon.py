"""The daemon loop: read the clock once per tick, evaluate, sleep, until told to stop."""

from __future__ import annotations

import logging
import signal
import threading
from datetime import datetime
from types import FrameType

from crmd.clock import Clock
from crmd.engine import Engine
from crmd.ruleset import load_rules
from crmd.sender import Sender
from crmd.site import Site
from crmd.store import Store, Unit

logger = logging.getLogger(__name__)


class Daemon:
    """Ticks the rules every `interval` seconds (production hardening comes later)."""

    def __init__(
        self, site: Site, store: Store, clock: Clock, *, dry_run: bool = False, interval: float = 30
    ) -> None:
        self.site = site
        self.store = store
        self.clock = clock
        self.dry_run = dry_run
        self.interval = interval
        self._stop = threading.Event()
        # Rules are validated before the first tick: a bad set stops the start, loudly.
        self.engine = Engine(site, load_rules(site))
        self.sender = Sender.for_site(site, store)  # channels/*.yaml, checked like rules
        self._last: datetime | None = None

    def stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        logger.info("stopping (signal %s)", signum)
        self._stop.set()

    def tick_once(self) -> None:
        now = self.clock.now()
        with Unit(self.store, dry_run=self.dry_run) as unit:
            # A dry run writes nothing, so it evaluates the window since its previous tick.
            start = self._last if self.dry_run else None
            report = self.engine.tick(unit, now, window_start=start)
        self._last = now
        fired = sum(1 for f in report.fires if f.status == "fired")
        logger.info(
            "tick at %s: %d fired, %d overdue%s",
            now.isoformat(),
            fired,
            len(report.overdue),
            " (dry run, nothing written)" if self.dry_run else "",
        )
        for error in report.errors:
            logger.error("%s", error)
        if not self.dry_run:  # a dry run sends nothing
            self.sender.run_once(now)

    def run(self, *, once: bool = False) -> None:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        rules = len(self.engine.rules)
        logger.info(
            "crmd running: site %s, store %s, %d rules", self.site.root, self.store.safe_url, rules
        )
        while not self._stop.is_set():
            self.tick_once()
            if once:
                break
            self._stop.wait(self.interval)
        logger.info("crmd stopped")
