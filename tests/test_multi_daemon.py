"""Three daemons on one PostgreSQL store, one killed -9 while it evaluates a rule.

The survivors take over its share (the rule's advisory lock dies with its connection) and
every fire, task, `task.overdue` event and text message happens exactly once. Every wait
is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from channel_site import sms_yaml
from daemon_child import CHILD, CRMD, RULES, wait_for_log
from fakes import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from sqlalchemy import create_engine, func, select, text

from crmd.intake.records import NewEvent, record_events, upsert_customers
from crmd.store.connections import application_name
from crmd.store.sharing import RULES_NAMESPACE
from crmd.store.tables import events, fires, outbox, tasks
from crmd.testing import Harness

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

DELIVERIES = 2000
DAYS = 10
DAEMONS = 3


@pytest.fixture
def busy_store(tmp_path: Path, pg_database: str) -> Iterator[Harness]:
    """Rules that started DAYS ago, and DELIVERIES deliveries since: thousands of due fires."""
    h = Harness(tmp_path / "site", RULES, store_url=pg_database)
    now = datetime.now(UTC)
    h.tick(now - timedelta(days=DAYS))
    base = now - timedelta(days=DAYS - 1)
    people = [
        {"id": f"C{n:04}", "name": f"客户{n}", "phone": f"1380000{n:04}"} for n in range(DELIVERIES)
    ]
    deliveries = [
        NewEvent("sale.delivered", base + timedelta(minutes=3 * n), f"C{n:04}", id=f"D{n:04}")
        for n in range(DELIVERIES)
    ]
    with h.store.write() as conn:
        upsert_customers(conn, people, now)
        record_events(conn, deliveries, h.site.event_types, now)
    try:
        yield h
    finally:
        h.store.dispose()


def test_three_daemons_one_killed_every_fire_and_message_once(
    busy_store: Harness, pg_database: str
) -> None:
    h = busy_store
    twilio = FakeTwilio()
    channel = sms_yaml(twilio.url, quiet_hours="false", reconcile_after_seconds="1")
    (h.root / "channels").mkdir(exist_ok=True)
    (h.root / "channels" / "sms.yaml").write_text(channel, encoding="utf-8")
    children: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(DAEMONS):
            env = {
                **os.environ,
                "CRMD_STORE_URL": pg_database,
                "CRMD_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "CRMD_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            }
            with (h.root / f"daemon-{n}.log").open("ab") as log:
                children.append(
                    subprocess.Popen(
                        [sys.executable, "-c", CHILD, str(h.root)], stdout=log, stderr=log, env=env
                    )
                )
        victim, fired_at_kill = _kill_one_mid_rule(h, pg_database, children)
        assert children[victim].wait(30) == -signal.SIGKILL
        survivors = [c for n, c in enumerate(children) if n != victim]
        _wait_until_done(h, survivors)
        # `crmd status` lists the two survivors, not the killed one.
        result = subprocess.run(
            [*CRMD, "--site", str(h.root), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CRMD_STORE_URL": pg_database},
        )
        assert result.returncode == 0, result.stderr
        listed = sorted(d["pid"] for d in json.loads(result.stdout)["daemons"])
        assert listed == sorted(c.pid for c in survivors)
        # `crmd reload` asks both survivors (this host's daemons) to reload.
        result = subprocess.run(
            [*CRMD, "--site", str(h.root), "reload"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "CRMD_STORE_URL": pg_database},
        )
        assert result.returncode == 0, result.stderr
        for n, child in enumerate(children):
            if n != victim:
                assert str(child.pid) in result.stdout
                wait_for_log(h.root / f"daemon-{n}.log", "reloaded: 3 rules")
        for child in survivors:
            child.send_signal(signal.SIGTERM)
        for child in survivors:
            assert child.wait(30) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(30)
        twilio.stop()
    logs = "".join((h.root / f"daemon-{n}.log").read_text(errors="replace") for n in range(DAEMONS))
    assert "Traceback" not in logs
    # The kill left work undone; the survivors did it.
    expected = 2 * DELIVERIES
    assert fired_at_kill < expected

    all_fires = h.fires()
    keys = Counter(f.key for f in all_fires)
    assert keys.most_common(1)[0][1] == 1
    per_rule = Counter(f.rule_id for f in all_fires)
    assert per_rule["delivery-welcome"] == DELIVERIES
    assert per_rule["sales-callback"] == DELIVERIES
    assert per_rule["daily-board"] in (DAYS, DAYS + 1)  # today's 09:00 may be ahead
    assert {f.status for f in all_fires} == {"fired"}
    # One task per fire, one message per welcome fire, nothing else.
    all_tasks = h.tasks()
    assert sorted(t.fire_id for t in all_tasks) == sorted(f.id for f in all_fires)
    welcome = sorted(f.id for f in all_fires if f.rule_id == "delivery-welcome")
    messages = h.outbox()
    assert sorted(m.fire_id for m in messages) == welcome
    assert {m.status for m in messages} == {"sent"}
    assert len({m.recipient for m in messages}) == DELIVERIES
    # Twilio received each customer's text exactly once.
    sent_to = Counter(m["to"] for m in twilio.messages)
    assert len(sent_to) == DELIVERIES
    assert sent_to.most_common(1)[0][1] == 1
    # Each overdue task got exactly one `task.overdue` event, whichever daemon marked it.
    with h.store.read() as conn:
        overdue_events = Counter(
            conn.execute(select(events.c.task_id).where(events.c.type == "task.overdue")).scalars()
        )
        overdue_tasks = set(conn.execute(select(tasks.c.id).where(tasks.c.overdue)).scalars())
    assert overdue_tasks  # the welcome tasks were due a day after deliveries days ago
    assert set(overdue_events) == overdue_tasks
    assert overdue_events.most_common(1)[0][1] == 1


def _kill_one_mid_rule(
    h: Harness, url: str, children: list[subprocess.Popen[bytes]]
) -> tuple[int, int]:
    """Kill -9 a daemon while it holds a rule's lock, a quarter of the way in; returns which
    one and how many fires there were. Bounded by 60 s."""
    admin = create_engine(url)
    # Each daemon's sessions are named after its PID (crmd.store.connections.application_name).
    holders = text(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.classid = :ns AND l.granted"
    )
    by_name = {application_name(pid=c.pid): n for n, c in enumerate(children)}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            for child in children:
                assert child.poll() is None, "a daemon exited early; see daemon-*.log"
            with admin.connect() as conn:
                fired = conn.execute(select(func.count()).select_from(fires)).scalar_one()
                names = [
                    name
                    for name in conn.execute(holders, {"ns": RULES_NAMESPACE}).scalars()
                    if name in by_name
                ]
            if fired >= DELIVERIES // 2 and names:
                victim = by_name[names[0]]
                children[victim].send_signal(signal.SIGKILL)
                return victim, int(fired)
            time.sleep(0.02)
    finally:
        admin.dispose()
    raise AssertionError("no daemon was caught holding a rule's lock")


def _wait_until_done(h: Harness, survivors: list[subprocess.Popen[bytes]]) -> None:
    """Until every due fire is in, every message sent and nothing moves for a second.

    Bounded by 60 s."""
    deadline = time.monotonic() + 60
    last: tuple[int, ...] = ()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        for child in survivors:
            assert child.poll() is None, "a surviving daemon exited; see daemon-*.log"
        with h.store.read() as conn:
            state = (
                conn.execute(select(func.count()).select_from(fires)).scalar_one(),
                conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.status == "sent")
                ).scalar_one(),
                conn.execute(select(func.count()).select_from(events)).scalar_one(),
            )
        if state != last:
            last, stable_since = state, time.monotonic()
        elif state[0] >= 2 * DELIVERIES + DAYS and state[1] == DELIVERIES:
            if time.monotonic() - stable_since >= 1:
                return
        time.sleep(0.1)
    raise AssertionError(f"not done in time: fires, sent, events = {last}")
