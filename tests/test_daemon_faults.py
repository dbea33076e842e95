"""Fault tests with real daemon processes: kill -9 at random instants, SIGTERM, a second
daemon, a broken rule file dropped in while running, systemd's notify socket.

Every wait is bounded; randomness is seeded so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from channel_site import sms_yaml
from daemon_child import CHILD, CRMD, RULES
from fakes import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

from crmd.testing import FakeSystemd, Harness

pytestmark = pytest.mark.slow

DELIVERIES = 120
MORE = 40
ROUNDS = 8
DAYS = 10


def start(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, stdout=out, stderr=out, env=env or dict(os.environ))


def run_crmd(
    site: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CRMD, "--site", str(site), *args], capture_output=True, text=True, timeout=60, env=env
    )


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def add_deliveries(h: Harness, first: int, count: int) -> None:
    """Deliveries of new customers, spread over days 9 to 6 before now (late arrivals)."""
    base = datetime.now(UTC) - timedelta(days=DAYS - 1)
    for n in range(first, first + count):
        h.customer(f"C{n:03}", phone=f"1380000{n:04}")
        at = (base + timedelta(minutes=37 * (n % 120))).astimezone(h.site.timezone)
        h.event("sale.delivered", at.strftime("%Y-%m-%d %H:%M"), customer=f"C{n:03}")
    h.store.dispose()


@pytest.fixture
def busy_site(tmp_path: Path) -> Harness:
    """A site whose rules started DAYS ago, with DELIVERIES deliveries since: a catch-up."""
    h = Harness(tmp_path / "site", RULES)
    h.tick(datetime.now(UTC) - timedelta(days=DAYS))
    add_deliveries(h, 0, DELIVERIES)
    return h


def test_kill_9_at_random_instants_loses_and_doubles_nothing(busy_site: Harness) -> None:
    """Daemons killed while ticking and while texting customers through a (fake) Twilio."""
    h = busy_site
    twilio = FakeTwilio()  # stamps messages with the real clock, as the daemons run on it
    channel = sms_yaml(twilio.url, quiet_hours="false", reconcile_after_seconds="1")
    (h.root / "channels").mkdir(exist_ok=True)
    (h.root / "channels" / "sms.yaml").write_text(channel, encoding="utf-8")
    env = {
        **os.environ,
        "CRMD_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "CRMD_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    }
    try:
        _kill_and_restart(h, env)
    finally:
        twilio.stop()
    # Every message went out once: messages in flight at a kill were found at Twilio by
    # the restarted sender, not sent again.
    outbox = h.outbox()
    assert {m.status for m in outbox} == {"sent"}
    sent_to = [m["to"] for m in twilio.messages]
    assert len(sent_to) == len(set(sent_to)) == len(outbox)


def _kill_and_restart(h: Harness, env: dict[str, str]) -> None:
    log = h.root / "daemon.log"
    rng = random.Random(20261123)
    total = DELIVERIES
    progress = []
    for _ in range(ROUNDS):
        add_deliveries(h, total, MORE)  # new work for every restart
        total += MORE
        offset = log.stat().st_size if log.exists() else 0
        child = start([sys.executable, "-c", CHILD, str(h.root)], log, env)
        if rng.random() < 0.25:  # during start-up: lock, migration check, rule loading
            time.sleep(rng.uniform(0, 1.5))
        else:  # during the catch-up tick, committed five fires at a time
            wait_for(log, "crmd running", child, after=offset)
            time.sleep(rng.uniform(0, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        assert integrity(h.root / "store" / "crmd.db") == "ok"
        progress.append(len(h.fires()))
    print("fires after each kill:", progress)
    # Last, a graceful stop in the middle of whatever is left, then a run to the end.
    offset = log.stat().st_size  # before the start, so its "crmd running" is after it
    child = start([sys.executable, "-c", CHILD, str(h.root)], log, env)
    wait_for(log, "crmd running", child, after=offset)
    time.sleep(rng.uniform(0, 0.3))
    child.send_signal(signal.SIGTERM)
    assert child.wait(60) == 0
    result = run_crmd(h.root, "run", "--once", env=env)
    assert result.returncode == 0, result.stderr
    # Past reconcile_after, a message left "sending" is looked up at Twilio: found, it is
    # marked sent; not found, it is queued again and the next pass sends it.
    for _ in range(3):
        time.sleep(1.2)
        result = run_crmd(h.root, "outbox", "send", env=env)
        assert result.returncode == 0, result.stderr

    fires = h.fires()
    keys = [f.key for f in fires]
    assert len(keys) == len(set(keys))
    by_rule = {rule: [f for f in fires if f.rule_id == rule] for rule in RULES_IDS}
    assert len(by_rule["delivery-welcome"]) == total
    assert len(by_rule["sales-callback"]) == total
    assert len(by_rule["daily-board"]) in (DAYS, DAYS + 1)  # today's 09:00 may be ahead
    assert {f.status for f in fires} == {"fired"}
    # Every fire made exactly its tasks and messages; nothing belongs to no fire.
    tasks = h.tasks()
    assert sorted(t.fire_id for t in tasks) == sorted(f.id for f in fires)
    outbox = h.outbox()
    assert sorted(m.fire_id for m in outbox) == sorted(f.id for f in by_rule["delivery-welcome"])
    assert len({m.recipient for m in outbox}) == total


RULES_IDS = ("delivery-welcome", "sales-callback", "daily-board")


def wait_for(log: Path, text: str, child: subprocess.Popen[bytes], after: int = 0) -> str:
    """The log (from byte `after`) once it shows `text`; fails if the daemon exits first.

    Bounded by 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        content = log.read_bytes()[after:].decode("utf-8", errors="replace")
        if text in content:
            return content
        assert child.poll() is None, content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log: {log.read_text(errors='replace')}")


def test_daemon_lifecycle_under_a_fake_systemd(busy_site: Harness, tmp_path: Path) -> None:
    h = busy_site
    systemd = FakeSystemd(str(tmp_path / "notify"))
    log = h.root / "daemon.log"
    env = dict(os.environ, NOTIFY_SOCKET=systemd.address, WATCHDOG_USEC="2000000")
    daemon = start([*CRMD, "--site", str(h.root), "run", "--interval", "0.5"], log, env)
    try:
        assert systemd.until("READY")["READY"] == "1"
        assert systemd.until("WATCHDOG") == {"WATCHDOG": "1"}

        # A second daemon on the same store refuses to start and names the first.
        second = run_crmd(h.root, "run")
        assert second.returncode == 1
        assert f"another crmd daemon (PID {daemon.pid}) is already running" in second.stderr

        status = run_crmd(h.root, "status", "--json")
        assert status.returncode == 0, status.stderr
        info = json.loads(status.stdout)
        assert (info["running"], info["pid"]) == (True, daemon.pid)

        # A truncated rule file dropped in while running: `crmd reload` refuses to signal,
        # and a SIGHUP from elsewhere (systemctl reload) keeps the last good set.
        broken = h.root / "rules" / "late-edit.yaml"
        broken.write_text("rules:\n  - id: half\n    when: {event: sale.deliv", encoding="utf-8")
        refused = run_crmd(h.root, "reload")
        assert refused.returncode == 1
        assert "rules/late-edit.yaml:3:" in refused.stderr
        daemon.send_signal(signal.SIGHUP)
        assert "MONOTONIC_USEC" in systemd.until("RELOADING")
        assert systemd.until("READY")["READY"] == "1"
        content = wait_for(log, "reload refused", daemon)
        assert "rules/late-edit.yaml:3:" in content
        assert daemon.poll() is None
        # `crmd status` shows the refusal once the next tick has recorded it.
        for _ in range(60):
            refusal = json.loads(run_crmd(h.root, "status", "--json").stdout)["last_error"]
            if refusal:
                break
            time.sleep(0.5)
        assert refusal == "reload refused: 1 error(s) in the rule or channel files"

        broken.write_text(
            "rules:\n  - id: extra\n    when: {event: member.joined}\n"
            "    do:\n      - task: {role: member_specialist, title: 入会}\n",
            encoding="utf-8",
        )
        accepted = run_crmd(h.root, "reload")
        assert accepted.returncode == 0, accepted.stderr
        systemd.until("RELOADING")
        wait_for(log, "reloaded: 4 rules", daemon)

        daemon.send_signal(signal.SIGTERM)
        assert systemd.until("STOPPING") == {"STOPPING": "1"}
        assert daemon.wait(30) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(30)
        systemd.close()
    assert integrity(h.root / "store" / "crmd.db") == "ok"
    log_text = log.read_text(encoding="utf-8")
    assert "crmd stopped" in log_text
    # Phone numbers never reach the log whole.
    assert "13800000001" not in log_text
    assert "138****0001" in log_text
    status = run_crmd(h.root, "status")
    assert status.returncode == 3
    assert "daemon: not running" in status.stdout
