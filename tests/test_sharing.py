"""Sharing one store between daemons: rule locks, overdue marked once, stable lock keys.

The three-daemon kill -9 test is tests/test_multi_daemon.py; these pin the parts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import OperationalError

from crmd.intake.records import NewEvent, record_events
from crmd.store import work
from crmd.store.database import Store
from crmd.store.pages import PAGE
from crmd.store.sharing import RULES_NAMESPACE, RuleLocks, rule_key
from crmd.store.tables import events
from crmd.testing import Harness

MakeSite = Callable[[str], Harness]

TWO_RULES = """
rules:
  - id: welcome
    when: {event: sale.delivered}
    do:
      - task: {role: sales_callback, title: "欢迎 {{ customer.name }}", due: 1 day}
  - id: thanks
    when: {event: sale.delivered}
    do:
      - task: {role: cr_specialist, title: "感谢 {{ customer.name }}", due: 1 day}
"""


def test_rule_keys_are_stable_across_processes() -> None:
    # CRC-32, never Python's per-process hash(): every daemon must agree on the key.
    assert rule_key("delivery-welcome") == -744470400
    assert rule_key("sales-callback") == -368048303
    assert -(2**31) <= rule_key("x" * 300) < 2**31


def test_a_task_is_marked_overdue_once_even_from_a_stale_read(
    make_site: MakeSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second daemon that read the task as not yet overdue before the first marked it
    emits no second `task.overdue`."""
    h = make_site(TWO_RULES)
    h.tick("2026-11-20 08:00")
    h.customer("C1", name="张三", phone="13800138000")
    h.event("sale.delivered", "2026-11-20 09:00", "C1")
    h.tick("2026-11-20 09:00")
    with h.store.read() as conn:
        stale = work.tasks_falling_overdue(conn, h.local("2026-11-21 09:00"))
    assert len(stale) == 2
    assert sorted(h.tick("2026-11-21 09:00").overdue) == sorted(t.id for t in stale)

    def stale_read(conn: Any, now: Any, cursor: Any = None, limit: int = PAGE) -> list[Any]:
        return stale if cursor is None else []  # the first page, as read before the marks

    monkeypatch.setattr(work, "tasks_falling_overdue", stale_read)
    assert h.tick("2026-11-21 09:01").overdue == []
    with h.store.write() as conn:
        marked = work.mark_tasks_overdue(conn, [t.id for t in stale])
        task_ids = list(
            conn.execute(select(events.c.task_id).where(events.c.type == "task.overdue")).scalars()
        )
    assert marked == set()
    assert sorted(task_ids) == sorted(t.id for t in stale)


@pytest.fixture
def shared(tmp_path: Path, pg_database: str) -> Iterator[tuple[Harness, Store]]:
    """A PostgreSQL site, and a second store handle standing for another daemon."""
    h = Harness(tmp_path / "site", TWO_RULES, store_url=pg_database)
    other = Store.open(pg_database, migrate=False)
    try:
        yield h, other
    finally:
        other.dispose()
        h.store.dispose()


@pytest.mark.postgres
def test_a_rule_another_daemon_evaluates_is_skipped_then_done(
    shared: tuple[Harness, Store],
) -> None:
    h, other = shared
    h.tick("2026-11-20 08:00")
    h.customer("C1", name="张三", phone="13800138000")
    h.event("sale.delivered", "2026-11-20 09:00", "C1")
    with RuleLocks(other).hold("welcome") as mine:
        assert mine
        # The other daemon is on `welcome`: this one does `thanks` only.
        report = h.tick("2026-11-20 09:00")
        assert [f.rule_id for f in report.fires] == ["thanks"]
        assert report.errors == []
        with RuleLocks(other).hold("welcome") as again:
            assert not again  # a second session cannot take a held rule
    # Freed: the next tick does `welcome`, and `thanks` stays done.
    report = h.tick("2026-11-20 09:01")
    assert [f.rule_id for f in report.fires] == ["welcome"]
    assert sorted(t.role for t in h.tasks()) == ["cr_specialist", "sales_callback"]
    # The engine frees every rule after its evaluation.
    for rule in ("welcome", "thanks"):
        with RuleLocks(other).hold(rule) as mine:
            assert mine


@pytest.mark.postgres
def test_a_rule_lock_dies_with_its_session(shared: tuple[Harness, Store]) -> None:
    """What frees a killed daemon's rules: the server drops a closed session's locks."""
    h, other = shared
    conn = other.engine.connect()
    key = {"ns": RULES_NAMESPACE, "key": rule_key("welcome")}
    assert conn.execute(text("SELECT pg_try_advisory_lock(:ns, :key)"), key).scalar_one()
    conn.commit()
    with RuleLocks(h.store).hold("welcome") as mine:
        assert not mine
    conn.invalidate()  # the socket closes without an unlock, as when the process dies
    conn.close()
    deadline = time.monotonic() + 10  # the server ends the session as it reads the EOF
    while time.monotonic() < deadline:
        with RuleLocks(h.store).hold("welcome") as mine:
            if mine:
                return
        time.sleep(0.05)
    raise AssertionError("the closed session's rule lock was not freed")


@pytest.mark.postgres
def test_event_writers_take_turns_so_numbers_commit_in_order(
    shared: tuple[Harness, Store],
) -> None:
    """While one transaction writes events, another's event insert waits for it: a rule
    never reads a higher event number while a lower one is still uncommitted."""
    h, other = shared
    h.customer("C1", name="张三", phone="13800138000")

    def record(conn: Connection, event_id: str, at: str) -> None:
        new = [NewEvent("sale.delivered", h.local(at), "C1", id=event_id)]
        record_events(conn, new, h.site.event_types, h.local(at))

    def second_writer(wait_ms: int) -> None:
        with other.engine.begin() as conn:
            conn.execute(text(f"SET LOCAL lock_timeout = '{wait_ms}ms'"))
            record(conn, "E2", "2026-11-20 09:01")

    first = h.store.engine.connect()
    try:
        record(first, "E1", "2026-11-20 09:00")
        with pytest.raises(OperationalError, match="lock timeout"):
            second_writer(300)
        first.commit()
    finally:
        first.close()
    second_writer(10_000)  # the first committed: the second goes through
    with h.store.read() as conn:
        assert [e.id for e in conn.execute(select(events).order_by(events.c.seq))] == ["E1", "E2"]
