"""A site's health, for `crmd status` and `crmd sites`: its daemons, last tick, lag and work.

`crmd sites DIR` surveys a directory of sites (a dealer group's, one directory per
dealership) without changing any of them.

On SQLite one daemon per store holds the site's instance lock (crmd.daemon.instance); on
PostgreSQL several daemons may share a site, and the live ones are those whose database
sessions are open (named by crmd.store.connections.application_name). Each daemon's row in
the store's `daemon` table says when it last ticked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row
from sqlalchemy.engine import make_url

from crmd.daemon.instance import running_pid
from crmd.engine.rule_errors import RuleFailure, failures
from crmd.errors import CrmdError
from crmd.site import Site, load_site
from crmd.store import heartbeats, work
from crmd.store.connections import application_name
from crmd.store.database import Store


@dataclass(frozen=True)
class SiteHealth:
    """What `crmd status` reports for one site at `now`."""

    now: datetime
    store: str  # the store's URL, password hidden
    schema: str | None
    # The running daemon's PID (the first one's, with several; -1 if it is unknown); None
    # when no daemon runs.
    pid: int | None
    beat: Row[Any] | None  # the row of the daemon reported on: the running one, or the last
    running: list[Row[Any]]  # the rows of every running daemon
    counts: dict[str, int]  # open and overdue tasks, messages by status
    failing: list[RuleFailure]  # rules failing on every tick, with their last error

    @property
    def last_tick(self) -> datetime | None:
        return self.beat.last_tick_at if self.beat is not None else None

    @property
    def lag_seconds(self) -> float | None:
        last = self.last_tick
        return None if last is None else (self.now - last).total_seconds()

    def as_json(self) -> dict[str, Any]:
        beat, lag = self.beat, self.lag_seconds
        return {
            "running": self.pid is not None,
            "pid": self.pid if self.pid is not None and self.pid > 0 else None,
            "store": self.store,
            "schema": self.schema,
            "started_at": beat.started_at.isoformat() if beat is not None else None,
            "last_tick_at": self.last_tick.isoformat() if self.last_tick is not None else None,
            "lag_seconds": None if lag is None else round(lag, 1),
            "rules": beat.rules if beat is not None else None,
            "last_error": beat.last_error if beat is not None else None,
            "daemons": [
                {
                    "host": b.host,
                    "pid": b.pid,
                    "last_tick_at": b.last_tick_at.isoformat() if b.last_tick_at else None,
                }
                for b in self.running
            ],
            **self.counts,
            "failing_rules": [f.as_json() for f in self.failing],
        }


def live_daemons(conn: Connection, schema: str | None) -> list[Row[Any]]:
    """The daemons of a site (in its schema) whose sessions are open on PostgreSQL: named
    after the site, or after the process alone (a group process shares its sessions among
    its sites, crmd.store.connections.SharedEngines)."""
    live = heartbeats.live_session_names(conn)
    return [
        b
        for b in heartbeats.heartbeats(conn)
        if b.state == "running"
        and (
            application_name(b.host, b.pid, schema) in live
            or application_name(b.host, b.pid) in live
        )
    ]


def site_health(site: Site, store: Store, now: datetime) -> SiteHealth:
    with store.read() as conn:
        beats = heartbeats.heartbeats(conn)
        counts = work.work_counts(conn, now)
        failing = failures(conn)
        running = [] if store.is_sqlite else live_daemons(conn, store.schema)
    if store.is_sqlite:
        pid = running_pid(site)
        beat = beats[0] if beats else None
        running = [] if pid is None else beats[:1]
        if pid is not None and pid <= 0 and beat is not None:
            pid = beat.pid  # the lock holder's PID is unknown: the daemon's own row says it
    else:
        beat = running[0] if running else (beats[0] if beats else None)
        pid = beat.pid if running and beat is not None else None
    return SiteHealth(now, store.safe_url, store.schema, pid, beat, running, counts, failing)


@dataclass(frozen=True)
class SiteSurvey:
    """One site of a directory of sites, as `crmd sites` lists it."""

    directory: str  # the site directory's name
    name: str
    schema: str | None
    state: str  # running | not running | not created | needs upgrade | error
    health: SiteHealth | None = None
    error: str = ""
    timezone: tzinfo = UTC  # the site's, for showing its times

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "site": self.directory,
            "name": self.name,
            "schema": self.schema,
            "state": self.state,
        }
        if self.error:
            out["error"] = self.error
        if self.health is not None:
            out.update(self.health.as_json())
        return out


def site_directories(root: Path) -> list[Path]:
    """The directories right under `root` that hold a site.yaml, by name."""
    if os.environ.get("CRMD_STORE_SCHEMA"):  # it would put every site in one schema
        raise CrmdError(
            "CRMD_STORE_SCHEMA names one site's schema; unset it to list several sites, or "
            "to run them in one process"
        )
    if not root.is_dir():
        raise CrmdError(f"{root} is not a directory of sites (one directory per site)")
    try:
        return sorted(d for d in root.iterdir() if (d / "site.yaml").is_file())
    except OSError as exc:
        raise CrmdError(f"cannot list the sites in {root}: {exc.strerror or exc}") from None


def survey_site(directory: Path, now: datetime) -> SiteSurvey:
    """A site's health without changing anything: a store that does not exist yet, or was
    made by an older crmd, is reported as such, not created or upgraded."""
    try:
        site = load_site(directory)
    except CrmdError as exc:
        return SiteSurvey(directory.name, "", None, "error", error=str(exc))
    about = (directory.name, site.name, site.store_schema)
    database = make_url(site.store_url).database or ""
    if site.store_url.startswith("sqlite") and not Path(database).is_file():
        return SiteSurvey(*about, "not created")
    try:
        store = Store(site.store_url, schema=site.store_schema)
    except CrmdError as exc:
        return SiteSurvey(*about, "error", error=str(exc))
    try:
        revision = store.revision()
        if revision is None:
            return SiteSurvey(*about, "not created")
        if revision != store.head_revision():
            return SiteSurvey(*about, "needs upgrade", error=f"store at revision {revision}")
        health = site_health(site, store, now)
    except CrmdError as exc:
        return SiteSurvey(*about, "error", error=str(exc))
    finally:
        store.dispose()
    state = "running" if health.pid is not None else "not running"
    return SiteSurvey(*about, state, health, timezone=site.timezone)
