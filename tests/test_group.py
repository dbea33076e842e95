"""`crmd run --sites DIR`: a dealer group's sites in one daemon process.

A real `crmd` process runs sites in their own PostgreSQL schemas and a site on its own
SQLite file, each with its own rules; the test adds a site, removes one and breaks one
while it runs, and stops it with SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from channel_site import sms_yaml
from daemon_child import CRMD, RULES, wait_for_log
from sqlalchemy import create_engine, text

from crmd.channels.sender import Sender
from crmd.daemon.clock import SystemClock
from crmd.daemon.group import GroupDaemon, load_group_config
from crmd.daemon.notify import Notifier
from crmd.daemon.service import Config, load_config
from crmd.site import Site
from crmd.store import heartbeats
from crmd.store.database import Store
from crmd.testing import FakeSystemd, Harness


def make_group_site(group: Path, name: str, store: str, schema: str | None = None) -> Harness:
    """A site of the group with one customer delivered half an hour ago, its rules started
    an hour ago, so the daemon's first pass welcomes the customer."""
    root = group / name
    root.mkdir(parents=True)
    settings = f"name: {name}\nstore: {store}\n" + (f"store_schema: {schema}\n" if schema else "")
    (root / "site.yaml").write_text(settings, encoding="utf-8")
    h = Harness(root, RULES, store_url=None if store.startswith("sqlite") else store)
    now = datetime.now(UTC)
    h.tick(now - timedelta(hours=1))
    h.customer("C1", name=f"{name}的客户", phone="13800138000")
    local = (now - timedelta(minutes=30)).astimezone(h.site.timezone)
    h.event("sale.delivered", f"{local:%Y-%m-%d %H:%M}", "C1")
    return h


def wait_until(check: Callable[[], bool], child: subprocess.Popen[bytes], log: Path) -> None:
    """Until `check()` holds; bounded by 60 s, and failing at once if the daemon exits."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert child.poll() is None, f"the daemon exited early:\n{log.read_text()}"
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached in 60 s; the daemon's log:\n{log.read_text()}")


def welcomed(h: Harness) -> bool:
    return [t.title for t in h.tasks("delivery-welcome")] == [f"欢迎 {h.site.name}的客户"]


def state_of(h: Harness) -> str:
    with h.store.read() as conn:
        (beat,) = heartbeats.heartbeats(conn)
    return str(beat.state)


def sites_json(group: Path) -> dict[str, Any]:
    result = subprocess.run(
        [*CRMD, "sites", str(group), "--json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode in (0, 3), result.stderr
    return {row["site"]: row for row in json.loads(result.stdout)}


@pytest.mark.postgres
def test_one_process_runs_a_groups_sites_and_follows_the_directory(
    tmp_path: Path, pg_database: str
) -> None:
    group = tmp_path / "sites"
    a = make_group_site(group, "dealer_a", pg_database, "dealer_a")
    b = make_group_site(group, "dealer_b", pg_database, "dealer_b")
    s = make_group_site(group, "solo", "sqlite:///store/crmd.db")
    broken = group / "broken"
    (broken / "rules").mkdir(parents=True)
    (broken / "site.yaml").write_text("name: broken\n", encoding="utf-8")
    (broken / "rules" / "bad.yaml").write_text("rules:\n  - id: x\n    when: {}\n", "utf-8")
    log = tmp_path / "group.log"
    with log.open("ab") as out:
        child = subprocess.Popen(
            [*CRMD, "run", "--sites", str(group), "--interval", "0.2", "--workers", "2"],
            stdout=out,
            stderr=out,
        )
    harnesses = [a, b, s]
    try:
        for h in harnesses:
            wait_until(lambda h=h: welcomed(h), child, log)
        assert "site broken left out" in log.read_text()
        # Each site's lines say which site they are about.
        wait_for_log(log, "crmd.engine.actions: [solo] message queued by delivery-welcome for C1")
        listed = sites_json(group)
        for name in ("dealer_a", "dealer_b", "solo"):
            assert (listed[name]["state"], listed[name]["pid"]) == ("running", child.pid)
        assert listed["broken"]["state"] == "not running"

        # A dealership joins, one leaves, and the broken one is mended; then a reload.
        c = make_group_site(group, "dealer_c", pg_database, "dealer_c")
        harnesses.append(c)
        shutil.rmtree(b.root)
        (broken / "rules" / "bad.yaml").write_text(RULES, encoding="utf-8")
        child.send_signal(signal.SIGHUP)
        wait_until(lambda: welcomed(c), child, log)
        wait_for_log(log, "site dealer_b removed")
        wait_for_log(log, f"crmd running: site {broken}")
        assert state_of(b) == "stopped"
        assert state_of(a) == "running"
        assert len(a.fires("delivery-welcome")) == 1  # ticking on, firing nothing twice
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            assert child.wait(timeout=30) == 0, log.read_text()
        finally:
            if child.poll() is None:
                child.kill()
    for h in (a, c, s):
        assert state_of(h) == "stopped"
    for h in harnesses:
        h.store.dispose()


def test_a_group_with_no_site_that_can_start_is_refused(tmp_path: Path) -> None:
    (tmp_path / "only" / "rules").mkdir(parents=True)
    (tmp_path / "only" / "site.yaml").write_text("name: only\n", encoding="utf-8")
    (tmp_path / "only" / "rules" / "bad.yaml").write_text("rules: [{id: x}]\n", "utf-8")
    result = subprocess.run(
        [*CRMD, "run", "--sites", str(tmp_path), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no site under" in result.stderr
    assert "only:" in result.stderr
    assert "Traceback" not in result.stderr


def test_each_site_of_a_group_takes_its_secrets_from_its_own_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMD_TWILIO_ACCOUNT_SID", "AC-the-groups")
    monkeypatch.setenv("CRMD_TWILIO_AUTH_TOKEN", "the-groups-token")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    secrets = {}
    for name, own in (
        ("dealer_a", {"twilio_account_sid": "AC-a", "twilio_auth_token": "a"}),
        ("dealer_b", None),
    ):
        h = Harness(tmp_path / name, RULES)
        (h.root / "channels").mkdir()
        (h.root / "channels" / "sms.yaml").write_text(sms_yaml("http://127.0.0.1:9"), "utf-8")
        if own is not None:
            (h.root / "credentials").mkdir(mode=0o700)
            for credential, value in own.items():
                (h.root / "credentials" / credential).write_text(value + "\n", "utf-8")
        sender = load_group_config(h.site, h.store).sender
        assert isinstance(sender, Sender)
        secrets[name] = dict(sender.channels.secrets["sms"])
        h.store.dispose()
    assert secrets == {
        "dealer_a": {"account_sid": "AC-a", "auth_token": "a"},
        "dealer_b": {"account_sid": "AC-the-groups", "auth_token": "the-groups-token"},
    }


class BlockingSender:
    """An outbox sender that hangs until released, as a stuck provider call would."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def run_once(self, now: datetime) -> None:
        self.entered.set()
        self.release.wait(60)


def test_the_group_starves_the_watchdog_while_a_site_makes_no_progress(
    tmp_path: Path, fake_systemd: Callable[[str], FakeSystemd]
) -> None:
    group = tmp_path / "sites"
    for name in ("dealer_a", "dealer_b"):
        Harness(group / name, RULES).store.dispose()
        (group / name / "site.yaml").write_text(f"name: {name}\n", encoding="utf-8")
    stuck = BlockingSender()

    def configure(site: Site, store: Store) -> Config:
        config = load_config(site, store)
        if site.root.name == "dealer_b":
            config.sender = stuck
        return config

    systemd = fake_systemd(str(tmp_path / "notify"))
    notifier = Notifier({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "400000"})
    daemon = GroupDaemon(group, SystemClock(), interval=0.05, notifier=notifier)
    daemon.configure = configure
    running = threading.Thread(target=daemon.run)
    running.start()
    try:
        assert "READY" in systemd.until("READY")
        assert stuck.entered.wait(30)
        systemd.until("WATCHDOG")  # fed while dealer_b's pass is young
        # 0.4 s without progress in dealer_b: no more pings, though dealer_a ticks on.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and daemon._stalled != ["dealer_b"]:
            time.sleep(0.05)
        assert daemon._stalled == ["dealer_b"]
        systemd.sock.settimeout(1.0)
        silent = False
        deadline = time.monotonic() + 10
        while not silent and time.monotonic() < deadline:  # past what was sent before
            try:
                systemd.next()
            except TimeoutError:
                silent = True
        assert silent  # a whole second, five ping intervals, without a ping
        stuck.release.set()  # the provider answers: progress again, pings again
        systemd.sock.settimeout(30)
        systemd.until("WATCHDOG")
    finally:
        stuck.release.set()
        daemon.stop()
        running.join(30)
    assert not running.is_alive()


def test_a_reload_that_cannot_find_the_directory_keeps_the_sites_running(tmp_path: Path) -> None:
    group = tmp_path / "sites"
    Harness(group / "dealer_a", RULES).store.dispose()
    (group / "dealer_a" / "site.yaml").write_text("name: dealer_a\n", encoding="utf-8")
    daemon = GroupDaemon(group, SystemClock(), interval=0.05, notifier=Notifier({}))
    running = threading.Thread(target=daemon.run)
    running.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not daemon.members:
            time.sleep(0.05)
        group.rename(tmp_path / "moved")  # an operator's mistake
        daemon.request_reload()
        while time.monotonic() < deadline and daemon._reload.is_set():
            time.sleep(0.05)
        assert not daemon._reload.is_set()  # the reload was taken
        time.sleep(0.2)
        assert running.is_alive()
        assert [d.name for d in daemon.members] == ["dealer_a"]
    finally:
        daemon.stop()
        running.join(30)
    assert not running.is_alive()


def _sessions_named(url: str, name: str) -> int:
    """Sessions open on the database of `url` whose application name is `name`."""
    engine = create_engine(url, connect_args={"application_name": "crmd-test"})
    try:
        with engine.connect() as conn:
            query = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE :name"
            )
            return int(conn.execute(query, {"name": name}).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_sites_of_a_group_share_the_processs_sessions(tmp_path: Path, pg_database: str) -> None:
    """Eight sites in schemas of one database, two workers: the sessions the group keeps
    open between passes are about two per worker, not two per site, and the sites'
    work stays apart."""
    group = tmp_path / "sites"
    sites = [make_group_site(group, f"dealer_{n}", pg_database, f"dealer_{n}") for n in range(8)]
    for h in sites:
        h.store.dispose()  # this process's own sessions gone: every one left is the group's
    workers = 2
    daemon = GroupDaemon(group, SystemClock(), interval=3600, workers=workers)
    running = threading.Thread(target=daemon.run)
    running.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            len(daemon.members) == len(sites)
            and all(m.running is not None and m.running.done() for m in daemon.members.values())
        ):
            time.sleep(0.05)
        assert len(daemon.members) == len(sites)
        assert all(m.running is not None and m.running.done() for m in daemon.members.values())
        ours = f"crmd {os.getpid()} %"
        kept = _sessions_named(pg_database, ours)
        assert 1 <= kept <= 2 * workers
        assert kept == daemon.sessions.sessions_kept()
        listed = sites_json(group)
        assert {listed[h.site.name]["state"] for h in sites} == {"running"}
    finally:
        daemon.stop()
        running.join(30)
    assert not running.is_alive()
    assert _sessions_named(pg_database, f"crmd {os.getpid()} %") == 0  # closed at the stop
    for h in sites:
        # Each site's customer was welcomed once, in its own schema, under its own name.
        assert welcomed(h), h.site.name
        assert state_of(h) == "stopped"
        h.store.dispose()
