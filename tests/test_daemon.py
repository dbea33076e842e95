"""The daemon in-process: sd_notify, reload, lateness, clock jumps, DST, store trouble, status.

Each test drives the daemon with an injected clock; no test waits on the wall clock.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fakes import TcpProxy
from sqlalchemy import event as sa_event
from sqlalchemy.engine import make_url

from crmd.channels.email import EmailChannel
from crmd.channels.sms import SmsChannel
from crmd.cli.commands import main
from crmd.daemon.clock import FixedClock
from crmd.daemon.instance import AlreadyRunning, InstanceLock, lock_path, running_pid
from crmd.daemon.logs import mask
from crmd.daemon.notify import Notifier
from crmd.daemon.service import Config, Daemon, load_config
from crmd.errors import RuleSetError
from crmd.site import Site
from crmd.store.database import Store
from crmd.testing import FakeSystemd, Harness

DAILY = """
rules:
  - id: daily-board
    when: {daily: "09:00"}
    do:
      - task:
          role: cr_specialist
          title: "看板 {{ fire.at | date }}"
          due: {after: 0 days, at: "17:00"}
"""

BIRTHDAY = """
rules:
  - id: birthday-sms
    when: {annually: customer.birthday, at: "09:00"}
    late: {skip_after: 1 day}
    do:
      - sms: {text: "生日快乐 {{ customer.name }}"}
  - id: birthday-call
    when: {annually: customer.birthday, at: "09:00"}
    do:
      - task: {role: member_specialist, title: "生日回访 {{ customer.name }}", due: 2 days}
"""


class Records(logging.Handler):
    """Collects the log lines of the `crmd` loggers (works with `-p no:logging` too)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.levels: list[int] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.levels.append(record.levelno)

    def at_least(self, level: int) -> list[str]:
        return [line for line, lv in zip(self.lines, self.levels, strict=True) if lv >= level]

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def logs() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger("crmd")
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(old)


def daemon_for(h: Harness, at: str, **kw: Any) -> tuple[Daemon, FixedClock]:
    clock = FixedClock(h.local(at))
    return Daemon(h.site, h.store, clock, **kw), clock


# ------------------------------------------------------------------ sd_notify


@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_speaks_the_protocol_to_a_socket(
    tmp_path: Path, abstract: bool, fake_systemd: Callable[[str], FakeSystemd]
) -> None:
    address = f"@crmd-test-{tmp_path.name}" if abstract else str(tmp_path / "notify")
    systemd = fake_systemd(address)
    notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_interval == 2.0
    assert notifier.ready("3 rules")
    assert systemd.next() == {"READY": "1", "STATUS": "3 rules"}
    assert notifier.reloading()
    msg = systemd.next()
    assert msg["RELOADING"] == "1"
    assert int(msg["MONOTONIC_USEC"]) > 0
    assert notifier.watchdog()
    assert systemd.next() == {"WATCHDOG": "1"}
    assert notifier.stopping()
    assert systemd.next() == {"STOPPING": "1"}


def test_notifier_without_systemd_does_nothing() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert not notifier.ready()
    # A watchdog meant for another process (WATCHDOG_PID) is not ours to feed.
    assert (
        Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"}).watchdog_usec
        == 0
    )


@pytest.mark.timeout(120)  # each wait on the socket is bounded (FakeSystemd); so is the whole
def test_daemon_tells_systemd_ready_watchdog_reloading_stopping(
    make_site: Callable[[str], Harness], tmp_path: Path, fake_systemd: Callable[[str], FakeSystemd]
) -> None:
    h = make_site(DAILY)
    systemd = fake_systemd(str(tmp_path / "notify"))
    notifier = Notifier({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"})
    daemon, _ = daemon_for(h, "2026-11-23 08:00", notifier=notifier, interval=3600)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        assert systemd.until("READY")["READY"] == "1"
        # With a 0.2 s watchdog the loop wakes every 0.1 s even though ticks are an hour apart.
        assert systemd.until("WATCHDOG") == {"WATCHDOG": "1"}
        daemon.request_reload()
        assert "MONOTONIC_USEC" in systemd.until("RELOADING")
        assert systemd.until("READY")["READY"] == "1"
    finally:
        daemon.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert systemd.until("STOPPING") == {"STOPPING": "1"}


# ------------------------------------------------------------------ reload


def test_reload_refuses_a_bad_rule_set_and_keeps_the_last_good_one(
    make_site: Callable[[str], Harness], logs: Records
) -> None:
    h = make_site(DAILY)
    daemon, clock = daemon_for(h, "2026-11-23 08:00")
    daemon.tick_once()
    # A truncated file: the rule is cut off in the middle of its `do`.
    (h.root / "rules" / "test.yaml").write_text(DAILY[: DAILY.index("do:") + 4] + "      - tas")
    assert not daemon.reload()
    assert "rules/test.yaml:" in logs.text()
    assert "reload refused" in logs.text()
    assert [r.id for r in daemon.engine.rules] == ["daily-board"]
    clock.set(h.local("2026-11-23 09:00"))
    daemon.tick_once()
    assert len(h.tasks("daily-board")) == 1


def test_reload_refuses_a_template_that_raises_and_keeps_running(
    make_site: Callable[[str], Harness], logs: Records
) -> None:
    h = make_site(DAILY)
    daemon, clock = daemon_for(h, "2026-11-23 08:00")
    daemon.tick_once()
    # A division by zero used to escape the check and end the daemon's loop (issue 14, 7b).
    (h.root / "rules" / "test.yaml").write_text(DAILY.replace("fire.at | date", "1 // 0"))
    assert not daemon.reload()
    assert "rules/test.yaml:8:18: task.title: template fails" in logs.text()
    assert "ZeroDivisionError" in logs.text()
    assert [r.id for r in daemon.engine.rules] == ["daily-board"]
    clock.set(h.local("2026-11-23 09:00"))
    daemon.tick_once()
    assert len(h.tasks("daily-board")) == 1


def test_reload_survives_a_check_that_fails_unexpectedly(
    make_site: Callable[[str], Harness], logs: Records
) -> None:
    h = make_site(DAILY)
    calls: list[int] = []

    def configure(site: Site, store: Store) -> Config:
        calls.append(1)
        if len(calls) > 1:  # a fault in crmd's own checking, not a mistake in a file
            raise RecursionError("maximum recursion depth exceeded")
        return load_config(site, store)

    daemon = Daemon(h.site, h.store, FixedClock(h.local("2026-11-23 08:00")), configure=configure)
    assert not daemon.reload()
    assert "reload refused: checking the files failed unexpectedly (RecursionError" in logs.text()
    assert daemon.reload_error == "reload refused: RecursionError: maximum recursion depth exceeded"
    assert [r.id for r in daemon.engine.rules] == ["daily-board"]


def test_reload_refuses_a_bad_channel_file_and_keeps_the_last_good_sender(
    make_site: Callable[[str], Harness], logs: Records
) -> None:
    h = make_site(DAILY)
    channels = h.root / "channels"
    channels.mkdir(exist_ok=True)
    (channels / "log.yaml").write_text("type: log\n", encoding="utf-8")
    daemon, _ = daemon_for(h, "2026-11-23 08:00")
    sender = daemon.config.sender
    (channels / "log.yaml").write_text("type: log\nrate_limit: {count: many}\n", encoding="utf-8")
    assert not daemon.reload()
    assert "channels/log.yaml:2:" in logs.text()
    assert "reload refused" in logs.text()
    assert daemon.config.sender is sender
    (channels / "log.yaml").write_text("type: log\n", encoding="utf-8")
    assert daemon.reload()
    assert daemon.config.sender is not sender


def test_reload_takes_a_good_rule_set(make_site: Callable[[str], Harness]) -> None:
    h = make_site(DAILY)
    daemon, _ = daemon_for(h, "2026-11-23 08:00")
    (h.root / "rules" / "test.yaml").write_text(DAILY.replace("daily-board", "daily-board-2"))
    assert daemon.reload()
    assert [r.id for r in daemon.engine.rules] == ["daily-board-2"]


def test_daemon_does_not_start_on_a_bad_rule_set(make_site: Callable[[str], Harness]) -> None:
    h = make_site(DAILY)
    (h.root / "rules" / "test.yaml").write_text("rules:\n  - id: x\n    when: {daily: 9}\n")
    with pytest.raises(RuleSetError):
        daemon_for(h, "2026-11-23 08:00")


def test_a_moved_time_of_day_does_not_fire_the_same_day_twice(
    make_site: Callable[[str], Harness],
) -> None:
    h = make_site(DAILY)
    h.tick("2026-11-23 08:00")
    h.tick("2026-11-23 09:00")
    assert len(h.fires("daily-board")) == 1
    h.reload(DAILY.replace('"09:00"', '"10:00"'))
    h.tick("2026-11-23 09:30")
    h.tick("2026-11-23 10:00")
    assert len(h.fires("daily-board")) == 1
    h.tick("2026-11-24 10:00")
    fires = h.fires("daily-board")
    assert [f.fire_at for f in fires] == [h.local("2026-11-23 09:00"), h.local("2026-11-24 10:00")]


def test_a_time_moved_earlier_after_it_passed_still_fires_that_day(
    make_site: Callable[[str], Harness],
) -> None:
    h = make_site(DAILY.replace('"09:00"', '"10:00"'))
    h.tick("2026-11-23 08:00")
    h.tick("2026-11-23 09:30")
    h.reload(DAILY)  # 10:00 -> 09:00, at 09:30: today's 09:00 has passed, 10:00 never comes
    report = h.tick("2026-11-23 09:31")
    assert [(f.fire_at, f.late) for f in report.fires] == [(h.local("2026-11-23 09:00"), True)]
    h.tick("2026-11-23 12:00")
    assert len(h.fires("daily-board")) == 1


# ------------------------------------------------------------------ lateness, catch-up, clocks


def birthday_site(make_site: Callable[[str], Harness]) -> Harness:
    h = make_site(BIRTHDAY)
    h.tick("2026-05-01 00:00")
    h.customer("C1", name="张三", phone="13800138000", birthday=date(1990, 5, 10), member=True)
    return h


@pytest.mark.parametrize(
    ("now", "sms_status"),
    [
        ("2026-05-11 08:59", "fired"),  # 23h59m late: still sent, marked late
        ("2026-05-11 09:00", "fired"),  # exactly 1 day late: still sent
        ("2026-05-11 09:01", "skipped"),  # more than a day: skipped and recorded
    ],
)
def test_skip_after_decides_at_the_deadline(
    make_site: Callable[[str], Harness], now: str, sms_status: str
) -> None:
    h = birthday_site(make_site)
    h.tick(now)  # the daemon was down from May 1 until now
    (sms,) = h.fires("birthday-sms")
    assert (sms.status, sms.late) == (sms_status, True)
    assert len(h.outbox()) == (1 if sms_status == "fired" else 0)
    if sms_status == "skipped":
        assert "late; the rule skips after 1 day" in sms.detail["reason"]
    # The callback task has no limit: it is created however late.
    (call,) = h.fires("birthday-call")
    assert (call.status, call.late) == ("fired", True)
    assert len(h.tasks("birthday-call")) == 1
    h.tick("2026-05-20 09:00")
    assert len(h.fires()) == 2  # nothing is tried again


def test_plan_without_from_shows_the_catch_up(
    make_site: Callable[[str], Harness], site_store: str | None
) -> None:
    h = birthday_site(make_site)
    result = CliRunner().invoke(
        main,
        ["--site", str(h.root), "--now", "2026-05-13T09:00", "plan", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    planned = {(f["rule"], f["status"]) for f in json.loads(result.output)["fires"]}
    assert planned == {("birthday-sms", "skipped"), ("birthday-call", "fired")}
    assert h.fires() == []  # plan writes nothing


def test_clock_backwards_repeats_nothing_and_forwards_loses_nothing(
    make_site: Callable[[str], Harness], logs: Records
) -> None:
    h = make_site(DAILY)
    daemon, clock = daemon_for(h, "2026-11-23 08:00")
    daemon.tick_once()
    clock.set(h.local("2026-11-23 09:00"))
    daemon.tick_once()
    assert len(h.fires()) == 1
    clock.set(h.local("2026-11-22 09:30"))  # NTP steps the clock a day back
    daemon.tick_once()
    assert "the clock went back" in logs.text()
    clock.set(h.local("2026-11-23 09:30"))
    daemon.tick_once()
    assert len(h.fires()) == 1
    clock.set(h.local("2026-11-26 08:00"))  # then three days forward
    daemon.tick_once()
    fires = h.fires()
    assert [f.fire_at for f in fires] == [
        h.local(f"2026-11-{day} 09:00") for day in ("23", "24", "25")
    ]
    assert [f.late for f in fires] == [False, True, True]
    clock.set(h.local("2026-11-26 09:00"))
    daemon.tick_once()
    assert len(h.fires()) == 4


@pytest.mark.parametrize("days", [("2026-03-07", "2026-03-09"), ("2026-10-31", "2026-11-02")])
def test_daily_rules_fire_once_a_day_across_daylight_saving(
    tmp_path: Path, days: tuple[str, str]
) -> None:
    root = tmp_path / "ny"
    root.mkdir()
    (root / "site.yaml").write_text("timezone: America/New_York\n")
    rules = "rules:\n" + "".join(
        f'  - id: at-{hhmm.replace(":", "")}\n    when: {{daily: "{hhmm}"}}\n'
        f"    do:\n      - task: {{role: cr_manager, title: x, due: 1 hour}}\n"
        # 01:30 happens twice in November; 02:30 does not happen in March.
        for hhmm in ("01:30", "02:30", "09:00")
    )
    h = Harness(root, rules)
    start, end = h.local(f"{days[0]} 12:00"), h.local(f"{days[1]} 12:00")
    clock = FixedClock(start)
    daemon = Daemon(h.site, h.store, clock)
    now = start
    while now <= end:  # a tick every 10 minutes of real (UTC) time
        clock.set(now)
        daemon.tick_once()
        now += timedelta(minutes=10)
    tz = h.site.timezone
    for rule in ("at-0130", "at-0230", "at-0900"):
        local_days = [f.fire_at.astimezone(tz).date().isoformat() for f in h.fires(rule)]
        assert len(local_days) == 2, (rule, local_days)
        assert len(set(local_days)) == 2, (rule, local_days)


# ------------------------------------------------------------------ one daemon per store


def test_a_second_lock_holder_is_refused_with_the_pid(make_site: Callable[[str], Harness]) -> None:
    h = make_site(DAILY)
    path = lock_path(h.site)
    assert path == h.root / "store" / "crmd.db.lock"
    first = InstanceLock(path)
    first.acquire()
    try:
        assert running_pid(h.site) is not None
        with pytest.raises(AlreadyRunning, match=r"PID \d+\) is already running"):
            InstanceLock(path).acquire()
    finally:
        first.release()
    assert running_pid(h.site) is None
    second = InstanceLock(path)
    second.acquire()
    second.release()


# ------------------------------------------------------------------ store trouble


@pytest.mark.sqlite_only
def test_a_locked_store_is_retried_not_fatal(
    make_site: Callable[[str], Harness], logs: Records
) -> None:
    h = make_site(DAILY)
    store = Store(h.store.url, busy_timeout_ms=100)
    daemon, clock = daemon_for(h, "2026-11-23 08:00")
    daemon.store = store
    daemon.tick_once()
    clock.set(h.local("2026-11-23 09:00"))
    other = sqlite3.connect(h.root / "store" / "crmd.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        assert not daemon.tick_once()
        assert "database is locked" in logs.text()
        assert daemon.last_error is not None
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert h.fires() == []
    assert daemon.tick_once()
    assert len(h.fires()) == 1


def _broken_store(url: str, pragma: str, on: dict[str, bool]) -> Store:
    """A store whose new connections run `pragma` while on["broken"] is set."""
    store = Store(url)

    @sa_event.listens_for(store.engine, "connect")
    def _connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        if on["broken"]:
            page_count = dbapi_conn.execute("PRAGMA page_count").fetchone()[0]
            dbapi_conn.execute(pragma.format(page_count=page_count))

    return store


@pytest.mark.parametrize(
    ("pragma", "message"),
    [
        # The disk is full: the file may not grow by a single page (SQLITE_FULL).
        ("PRAGMA max_page_count={page_count}", "full"),
        # The store is read-only (SQLITE_READONLY); root ignores chmod, so ask SQLite.
        ("PRAGMA query_only=1", "readonly"),
    ],
)
@pytest.mark.sqlite_only
def test_a_full_or_read_only_store_is_reported_and_recovers(
    make_site: Callable[[str], Harness], logs: Records, pragma: str, message: str
) -> None:
    h = make_site(DAILY)
    h.tick("2026-11-23 08:00")
    for n in range(200):  # enough rows that a tick must grow the file
        h.customer(f"C{n}", name="x" * 100)
    on = {"broken": True}
    daemon, clock = daemon_for(h, "2026-11-23 09:00")
    daemon.store = _broken_store(h.store.url, pragma, on)
    h.reload(
        DAILY.replace("daily:", "for_each: customer, daily:").replace(
            "看板 {{ fire.at | date }}", "{{ customer.name }} " + "y" * 200
        )
    )
    daemon.config.engine = h.engine
    assert not daemon.tick_once()
    assert message in logs.text().replace("read-only", "readonly").replace("disk is full", "full")
    with sqlite3.connect(h.root / "store" / "crmd.db") as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert h.fires() == []
    on["broken"] = False  # space freed, permissions fixed
    clock.set(h.local("2026-11-23 09:01"))
    assert daemon.tick_once()
    assert len(h.fires()) == 200
    assert len(h.tasks()) == 200


# ------------------------------------------------------------------ status and logs


def test_status_reports_the_last_tick_lag_and_work(
    make_site: Callable[[str], Harness], site_store: str | None
) -> None:
    h = make_site(DAILY)
    daemon, clock = daemon_for(h, "2026-11-23 08:00")
    daemon.tick_once()
    clock.set(h.local("2026-11-23 09:00"))
    daemon.tick_once()

    def status(now: str) -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(
            main, ["--site", str(h.root), "--now", now, "status", "--json"], catch_exceptions=False
        )
        return result.exit_code, json.loads(result.output)

    if site_store is not None:
        # PostgreSQL: a daemon runs while its sessions are open (several may share a store).
        code, info = status("2026-11-23T09:05")
        assert (code, info["running"], info["pid"]) == (0, True, os.getpid())
        assert [d["pid"] for d in info["daemons"]] == [os.getpid()]
        h.store.dispose()  # as if the daemon were gone
    code, info = status("2026-11-23T09:05")
    assert code == 3  # no daemon holds the lock, or (PostgreSQL) has a session open
    assert info["running"] is False
    assert info["daemons"] == []
    assert info["last_tick_at"] == h.local("2026-11-23 09:00").isoformat()
    assert info["lag_seconds"] == 300
    assert (info["open_tasks"], info["overdue_tasks"]) == (1, 0)
    assert status("2026-11-23T17:01")[1]["overdue_tasks"] == 1
    if site_store is not None:
        return
    lock = InstanceLock(lock_path(h.site))
    lock.acquire()
    try:
        code, info = status("2026-11-23T09:05")
    finally:
        lock.release()
    assert (code, info["running"]) == (0, True)


def test_logs_mask_phone_numbers_and_addresses() -> None:
    line = "message queued by r for C1: sms to 13800138000; email to zhang.san@example.com"
    assert mask(line) == "message queued by r for C1: sms to 138****8000; email to z***@example.com"
    assert mask("tel 138-0013-8000.") == "tel 138****8000."
    # Dates, times and ids stay readable.
    kept = "fire fired r customer:C1 at 2026-11-23T09:00:00+00:00, due 2026-11-24. task 12345"
    assert mask(kept) == kept


def test_one_log_line_per_fire_task_and_message(
    make_site: Callable[[str], Harness], logs: Records
) -> None:
    h = birthday_site(make_site)
    h.tick("2026-05-10 09:00")
    text = logs.text()
    assert "fire fired birthday-sms customer:C1" in text
    assert "task 1 created by birthday-call for C1" in text
    assert "message queued by birthday-sms for C1: sms to 13800138000" in text


def test_the_shipped_unit_file_asks_for_notify_watchdog_credentials_and_hardening() -> None:
    settings = unit_settings("crmd.service")
    assert settings["Type"] == ["notify"]
    assert settings["WatchdogSec"]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["User"] == ["crmd"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["ProtectSystem"] == ["strict"]
    assert len(settings["LoadCredential"]) == 3
    # The store (and so its lock and WAL files) is in the one writable directory.
    (store_url,) = [e for e in settings["Environment"] if e.startswith("CRMD_STORE_URL=")]
    store_dir = str(Path(store_url.removeprefix("CRMD_STORE_URL=sqlite:///")).parent)
    assert settings["ReadWritePaths"] == [store_dir]
    assert settings["StateDirectory"] == [Path(store_dir).name]


def unit_settings(name: str) -> dict[str, list[str]]:
    unit = (Path(__file__).parent.parent / "packaging" / "systemd" / name).read_text()
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


# The systemd credentials the built-in channels read, in the units' order.
CREDENTIALS = [spec.credential for kind in (SmsChannel, EmailChannel) for spec in kind.secrets]


def test_the_unit_loads_the_credentials_the_channels_read() -> None:
    assert unit_settings("crmd.service")["LoadCredential"] == [
        f"{name}:/etc/crmd/credentials/{name}" for name in CREDENTIALS
    ]
    assert CREDENTIALS == ["twilio_account_sid", "twilio_auth_token", "smtp_password"]


def test_the_template_unit_runs_one_site_of_a_shared_store_like_the_single_unit() -> None:
    """crmd@SITE.service: the site from its instance name, the store URL from a file, and
    otherwise the very settings of crmd.service (hardening, watchdog, reload)."""
    single, template = unit_settings("crmd.service"), unit_settings("crmd@.service")
    assert template["Environment"] == [
        "CRMD_SITE=/etc/crmd/sites/%i",
        "CRMD_LOG_LEVEL=info",
    ]
    assert template["EnvironmentFile"] == ["/etc/crmd/store.env"]
    assert template["LoadCredential"] == [
        f"{name}:/etc/crmd/sites/%i/credentials/{name}" for name in CREDENTIALS
    ]
    # No local store: nothing to write, so no state directory.
    local = {"StateDirectory", "StateDirectoryMode", "ReadWritePaths"}
    assert local <= set(single)
    assert not local & set(template)
    differ = {"Description", "Environment", "EnvironmentFile", "LoadCredential"}
    assert {k: v for k, v in template.items() if k not in differ} == {
        k: v for k, v in single.items() if k not in differ | local
    }


def test_the_group_unit_runs_every_site_with_the_template_units_other_settings() -> None:
    """crmd-group.service: one process for /etc/crmd/sites, each site's secrets read from its
    own directory, and otherwise the settings of crmd@.service."""
    template, group = unit_settings("crmd@.service"), unit_settings("crmd-group.service")
    assert group["ExecStart"] == [
        "/opt/crmd/bin/crmd run --sites /etc/crmd/sites --interval 30 --workers 4"
    ]
    assert "LoadCredential" not in group
    assert "ExecStartPre" not in group  # a site with bad rules is left out, not fatal
    differ = {"Description", "Environment", "ExecStart", "ExecStartPre", "LoadCredential"}
    assert group["Environment"] == ["CRMD_LOG_LEVEL=info"]
    assert {k: v for k, v in group.items() if k not in differ} == {
        k: v for k, v in template.items() if k not in differ
    }


def test_skip_after_takes_calendar_time_only(make_site: Callable[[str], Harness]) -> None:
    h = make_site(BIRTHDAY)
    (h.root / "rules" / "test.yaml").write_text(
        BIRTHDAY.replace("skip_after: 1 day", "skip_after: 2 working days")
    )
    with pytest.raises(RuleSetError) as caught:
        h.reload(BIRTHDAY.replace("skip_after: 1 day", "skip_after: 2 working days"))
    assert str(caught.value).startswith("rules/test.yaml:5:")
    assert "skip_after takes calendar time" in str(caught.value)
    with pytest.raises(RuleSetError, match="unknown key 'skip'"):
        h.reload(BIRTHDAY.replace("skip_after: 1 day", "skip: 1 day"))


class RecordingSender:
    """Stands in for crmd.channels.sender until channels land: records each pass's `now`."""

    def __init__(self) -> None:
        self.passes: list[Any] = []

    def run_once(self, now: Any) -> str:
        self.passes.append(now)
        return f"{len(self.passes)} pass(es)"


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_sender_step_runs_after_the_rules_each_pass(
    make_site: Callable[[str], Harness], dry_run: bool
) -> None:
    from crmd.daemon.service import load_config

    h = make_site(DAILY)
    sender = RecordingSender()

    def configure(site: Any, store: Any) -> Config:
        config = load_config(site, store)
        config.sender = sender
        return config

    daemon, clock = daemon_for(h, "2026-11-23 08:00", configure=configure, dry_run=dry_run)
    assert [name for name, _ in daemon.steps()] == (["rules"] if dry_run else ["rules", "sender"])
    daemon.tick_once()
    clock.set(h.local("2026-11-23 09:00"))
    daemon.tick_once()
    expected = [] if dry_run else [h.local("2026-11-23 08:00"), h.local("2026-11-23 09:00")]
    assert sender.passes == expected


def test_an_idle_pass_keeps_out_of_the_log_and_a_busy_one_says_what_it_did(
    make_site: Callable[[str], Harness], logs: Records
) -> None:
    h = make_site(DAILY)
    daemon, clock = daemon_for(h, "2026-11-23 08:00")
    assert [name for name, _ in daemon.steps()] == ["rules", "sender"]
    daemon.tick_once()  # the rule starts: said once
    started = len(logs.lines)
    for minute in ("08:01", "08:02", "08:59"):
        clock.set(h.local(f"2026-11-23 {minute}"))
        daemon.tick_once()
    assert logs.at_least(logging.INFO)[started:] == []
    clock.set(h.local("2026-11-23 09:00"))
    daemon.tick_once()
    said = logs.at_least(logging.INFO)[started:]
    assert any(line.startswith("fire fired daily-board") for line in said)
    assert any("1 fired (0 late)" in line for line in said)


def test_a_starting_daemon_forgets_daemons_not_heard_from_in_a_week(
    make_site: Callable[[str], Harness], site_store: str | None
) -> None:
    from crmd.store import heartbeats

    h = make_site(DAILY)
    daemon, _ = daemon_for(h, "2026-11-23 08:00")
    now = h.local("2026-11-23 08:00")
    with h.store.write() as conn:
        for name, heard in (("gone", timedelta(days=7, seconds=1)), ("recent", timedelta(days=7))):
            heartbeats.save_heartbeat(
                conn,
                f"old-host:{name}",
                host="old-host",
                pid=1,
                state="stopped",
                started_at=now - heard,
                rules=1,
                updated_at=now - heard,
            )
    # Not the main thread: the daemon leaves the test process's signal handlers alone.
    running = threading.Thread(target=daemon.run, kwargs={"once": True})
    running.start()
    running.join(timeout=60)
    assert not running.is_alive()
    with h.store.read() as conn:
        ids = sorted(beat.id for beat in heartbeats.heartbeats(conn))
    assert ids == sorted([daemon.id, "old-host:recent"])


@pytest.mark.postgres
def test_heartbeat_and_work_counts_on_postgresql(tmp_path: Path, pg_database: str) -> None:
    from crmd.store import heartbeats, work

    h = Harness(tmp_path / "pg", DAILY, store_url=pg_database)
    try:
        daemon, clock = daemon_for(h, "2026-11-23 08:00")
        daemon.tick_once()
        clock.set(h.local("2026-11-23 09:00"))
        daemon.tick_once()
        daemon.tick_once()
        with h.store.read() as conn:
            (beat,) = heartbeats.heartbeats(conn)
            counts = work.work_counts(conn, h.local("2026-11-23 17:01"))
        assert (beat.state, beat.last_tick_at) == ("running", h.local("2026-11-23 09:00"))
        assert (counts["open_tasks"], counts["overdue_tasks"]) == (1, 1)
    finally:
        h.store.dispose()


@pytest.mark.postgres
def test_a_lost_database_connection_is_retried_and_the_daemon_rides_it_out(
    tmp_path: Path, pg_database: str, logs: Records
) -> None:
    """PostgreSQL restarting, or the network to it failing: the daemon logs it, keeps
    running, and fires what fell due once the database is back."""
    url = make_url(pg_database)
    proxy = TcpProxy(url.port or 5432, url.host or "127.0.0.1")
    h = Harness(tmp_path / "pg", DAILY, store_url=url.set(port=proxy.port).render_as_string(False))
    try:
        daemon, clock = daemon_for(h, "2026-11-23 08:00")
        assert daemon.tick_once()
        proxy.cut()
        for minute in ("09:00", "09:01"):
            clock.set(h.local(f"2026-11-23 {minute}"))
            assert daemon.tick_once() is False
        assert "cannot" in (daemon.last_error or "")
        assert any("step failed, will retry" in line for line in logs.at_least(logging.ERROR))
        proxy.restore()
        clock.set(h.local("2026-11-23 09:02"))
        assert daemon.tick_once()
        assert daemon.last_error is None
        assert [t.title for t in h.tasks()] == ["看板 2026-11-23"]
    finally:
        proxy.cut()
        h.store.dispose()


@pytest.mark.timeout(120)
def test_a_long_tick_feeds_the_watchdog_between_transactions(
    make_site: Callable[[str], Harness], tmp_path: Path, fake_systemd: Callable[[str], FakeSystemd]
) -> None:
    h = make_site(DAILY)
    systemd = fake_systemd(str(tmp_path / "notify"))
    # A watchdog interval of zero: every transaction of the tick is a chance to ping.
    notifier = Notifier({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "1"})
    daemon, clock = daemon_for(h, "2026-11-01 08:00", notifier=notifier)
    daemon.engine.page_size = 1
    daemon.tick_once()
    clock.set(h.local("2026-11-04 10:00"))  # four fires to catch up, one per page
    systemd.sock.settimeout(0.5)
    pings = 0
    daemon.tick_once()
    for _ in range(10_000):  # bounded: what the tick sent, then 0.5 s of silence
        try:
            assert systemd.next() == {"WATCHDOG": "1"}
        except TimeoutError:
            break
        pings += 1
    assert len(h.fires()) == 4
    assert pings >= 4


@pytest.mark.parametrize(
    ("expr", "daily"),
    [("0 9 * * 1-5", True), ("@daily", True), ("@hourly", False), ("*/30 9 * * *", False)],
)
def test_cron_fires_are_keyed_by_day_only_when_they_come_once_a_day(expr: str, daily: bool) -> None:
    from zoneinfo import ZoneInfo

    from crmd.calendar.schedules import CronSchedule, once_a_day

    assert once_a_day(CronSchedule(expr, ZoneInfo("Asia/Shanghai"))) is daily


def test_the_daemon_holds_sms_without_secrets_and_status_counts_them(
    make_site: Callable[[str], Harness], monkeypatch: pytest.MonkeyPatch, site_store: str | None
) -> None:
    """The shipped sms channel with no Twilio secrets: the message waits, held, and says so."""
    for name in ("CRMD_TWILIO_ACCOUNT_SID", "CRMD_TWILIO_AUTH_TOKEN", "CREDENTIALS_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    h = make_site(
        "rules:\n"
        "  - id: hello\n"
        "    when: {event: sale.delivered}\n"
        '    do: [{sms: {text: "您好 {{ customer.name }}"}}]\n'
    )
    (h.root / "channels").mkdir(exist_ok=True)
    (h.root / "channels" / "sms.yaml").write_text(
        (Path(__file__).resolve().parent.parent / "channels" / "sms.yaml").read_text("utf-8"),
        encoding="utf-8",
    )
    h.customer("C1", name="张三", phone="13800138000")
    daemon, clock = daemon_for(h, "2026-11-23 10:00")
    daemon.tick_once()  # the rule starts here
    h.event("sale.delivered", "2026-11-23 10:01", "C1")
    clock.set(h.local("2026-11-23 10:05"))
    daemon.tick_once()
    (message,) = h.outbox()
    assert message.status == "held"
    assert "CRMD_TWILIO" in (message.last_error or "")
    result = CliRunner().invoke(
        main, ["--site", str(h.root), "--now", "2026-11-23T10:06", "status"], catch_exceptions=False
    )
    assert "0 queued, 1 held, 0 dead" in result.output


@pytest.mark.timeout(120)
def test_failed_fires_are_in_the_status_line_and_the_log(
    make_site: Callable[[str], Harness],
    tmp_path: Path,
    fake_systemd: Callable[[str], FakeSystemd],
    logs: Records,
) -> None:
    # A delivery for a customer not in the store: the fire fails; the daemon says so once
    # in its log and keeps it in systemd's status line until it is made.
    h = make_site(
        "rules:\n  - id: callback\n    when: {event: sale.delivered}\n"
        "    do: [{task: {role: sales_callback, title: '回访 {{ customer.name }}'}}]\n"
    )
    systemd = fake_systemd(str(tmp_path / "notify"))
    notifier = Notifier({"NOTIFY_SOCKET": systemd.address})
    daemon, clock = daemon_for(h, "2026-11-23 08:00", notifier=notifier)
    daemon.tick_once()
    h.event("sale.delivered", "2026-11-23 08:30", "C9", event_id="D9")
    clock.set(h.local("2026-11-23 09:00"))
    daemon.tick_once()
    assert systemd.until("STATUS")["STATUS"].endswith(", 1 failed fires")
    assert "1 failed fire(s) pending" in logs.text()
    clock.set(h.local("2026-11-23 09:01"))
    daemon.tick_once()
    assert logs.text().count("failed fire(s) pending") == 1  # said once, not every tick
    h.customer("C9", name="王五")
    clock.set(h.local("2026-11-23 09:02"))
    daemon.tick_once()
    assert not systemd.until("STATUS")["STATUS"].endswith("failed fires")
    assert h.only_task("callback").customer_id == "C9"
