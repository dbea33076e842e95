"""Helpers for testing sites and rules: a site in a directory, driven by an explicit clock.

Used by crmd's own tests and meant for a dealership's tests of its own rules.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Row, func, select

from crmd.engine import tasks as task_ops
from crmd.engine.evaluation import Engine
from crmd.engine.report import TickReport
from crmd.intake.records import NewEvent, record_events, upsert_customers, upsert_vehicles
from crmd.rules.ruleset import load_rules
from crmd.site import SETTINGS_FILE, Site, load_site
from crmd.store import work
from crmd.store.database import Store, Unit
from crmd.store.tables import events, fires, outbox, tasks


class Harness:
    """A site directory with a real store, rules from YAML, and time passed in.

    The store is the site's SQLite file unless `store_url` names another (PostgreSQL), in
    the schema that the site's settings name (`store_schema`), if any. A directory without
    site.yaml gets an empty one, so that `crmd --site` takes it as a site.
    """

    def __init__(self, root: Path, rules_yaml: str | None = None, store_url: str | None = None):
        root.mkdir(parents=True, exist_ok=True)
        if rules_yaml is not None:
            (root / "rules").mkdir(exist_ok=True)
            (root / "rules" / "test.yaml").write_text(rules_yaml, encoding="utf-8")
        if not (root / SETTINGS_FILE).exists():
            # A site is a directory with site.yaml (crmd.site.open_site): an empty one will do.
            (root / SETTINGS_FILE).touch()
        self.root = root
        self.site: Site = load_site(root)
        self.store = Store.open(
            store_url or f"sqlite:///{root / 'store' / 'crmd.db'}", schema=self.site.store_schema
        )
        self.engine = Engine(self.site, load_rules(self.site))

    def reload(self, rules_yaml: str) -> None:
        (self.root / "rules" / "test.yaml").write_text(rules_yaml, encoding="utf-8")
        self.engine = Engine(self.site, load_rules(self.site))

    def local(self, text: str) -> datetime:
        """A site-local time written as 'YYYY-MM-DD HH:MM', as an aware UTC datetime."""
        return datetime.fromisoformat(text).replace(tzinfo=self.site.timezone).astimezone(UTC)

    def tick(self, at: str | datetime) -> TickReport:
        now = self.local(at) if isinstance(at, str) else at
        with Unit(self.store) as unit:
            return self.engine.tick(unit, now)

    def plan(self, start: str, end: str) -> TickReport:
        with Unit(self.store, dry_run=True) as unit:
            return self.engine.tick(unit, self.local(end), window_start=self.local(start))

    def customer(self, cid: str, **fields: Any) -> None:
        record = {"id": cid, "name": fields.pop("name", f"客户{cid}"), **fields}
        with self.store.write() as conn:
            upsert_customers(conn, [record], datetime.now(UTC))

    def vehicle(self, vid: str, customer_id: str, **fields: Any) -> None:
        with self.store.write() as conn:
            upsert_vehicles(
                conn, [{"id": vid, "customer_id": customer_id, **fields}], datetime.now(UTC)
            )

    def event(
        self,
        event_type: str,
        at: str,
        customer: str | None = None,
        vehicle: str | None = None,
        data: Mapping[str, Any] | None = None,
        event_id: str = "",
        recorded: str | None = None,
    ) -> None:
        when = self.local(at)
        with self.store.write() as conn:
            record_events(
                conn,
                [NewEvent(event_type, when, customer, vehicle, data or {}, event_id)],
                self.site.event_types,
                self.local(recorded) if recorded else when,
            )

    def attempt(self, task_id: int, outcome: str, at: str, **kw: Any) -> Row[Any]:
        with self.store.write() as conn:
            return task_ops.attempt(conn, task_id, outcome, self.local(at), **kw)

    def done(self, task_id: int, at: str) -> Row[Any]:
        with self.store.write() as conn:
            return task_ops.done(conn, task_id, self.local(at))

    def tasks(self, rule: str | None = None) -> list[Row[Any]]:
        query = select(tasks).order_by(tasks.c.id)
        if rule:
            query = query.where(tasks.c.rule_id == rule)
        with self.store.read() as conn:
            return list(conn.execute(query))

    def only_task(self, rule: str) -> Row[Any]:
        """The one task `rule` made; fails the test if it made none or several."""
        found = self.tasks(rule)
        assert len(found) == 1, found
        return found[0]

    def listed(self, at: str, role: str | None = None) -> list[Row[Any]]:
        """What `crmd tasks` would list at a local time."""
        with self.store.read() as conn:
            return work.list_tasks(conn, self.local(at), role=role)

    def fires(self, rule: str | None = None) -> list[Row[Any]]:
        query = select(fires).order_by(fires.c.id)
        if rule:
            query = query.where(fires.c.rule_id == rule)
        with self.store.read() as conn:
            return list(conn.execute(query))

    def outbox(self) -> list[Row[Any]]:
        with self.store.read() as conn:
            return list(conn.execute(select(outbox).order_by(outbox.c.id)))

    def count(self, table: Any) -> int:
        with self.store.read() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    def counts(self) -> dict[str, int]:
        return {t.name: self.count(t) for t in (events, fires, tasks, outbox)}


class FakeSystemd:
    """systemd's notify socket, for tests: a real unix datagram socket that reads what a
    daemon sends (`@name` binds in the abstract namespace). Close it when done."""

    def __init__(self, address: str, timeout: float = 30) -> None:
        self.address = address
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(timeout)

    def next(self) -> dict[str, str]:
        """The next message, as its KEY=value lines."""
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines())

    def until(self, key: str, timeout: float | None = None) -> dict[str, str]:
        """The first message that has `key`, skipping others (such as watchdog pings).

        Bounded: after `timeout` seconds in all (the socket's time-out by default) it raises
        TimeoutError. A daemon that pings its watchdog but never sends `key` (or whose one
        datagram was dropped) would otherwise keep this waiting for ever.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        per_message = self.sock.gettimeout()
        skipped: list[dict[str, str]] = []
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(min(left, per_message) if per_message else left)
                try:
                    message = self.next()
                except TimeoutError:
                    break
                if key in message:
                    return message
                skipped.append(message)
        finally:
            self.sock.settimeout(per_message)
        raise TimeoutError(
            f"no {key} from the daemon in {limit:g} s; it sent {len(skipped)} other message(s)"
            f"{', the last ' + repr(skipped[-1]) if skipped else ''}"
        )

    def close(self) -> None:
        self.sock.close()
