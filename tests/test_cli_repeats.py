"""The same manual event recorded twice within a minute is reported, not recorded twice
(crmd.intake.repeats): one refused call makes one P6 thank-you SMS, not two."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import ColumnElement, Table, func, select
from test_cli import crmd, seed, site, tasks_json

from crmd.site import load_site
from crmd.store.database import Store
from crmd.store.tables import events, fires, outbox

__all__ = ["site"]  # the fixture, shared with test_cli


def count(site: Path, table: Table, *where: ColumnElement[bool]) -> int:
    store = Store(load_site(site).store_url)
    try:
        with store.read() as conn:
            query = select(func.count()).select_from(table).where(*where)
            return int(conn.execute(query).scalar_one())
    finally:
        store.dispose()


@pytest.fixture
def callback(site: Path) -> tuple[Path, str]:
    """The shipped site with C1's sales callback task open on 5 November."""
    seed(site)
    assert crmd(site, "--now", "2026-11-05T00:00", "tick").exit_code == 0
    (task,) = tasks_json(site, "2026-11-05T00:00")
    return site, str(task["id"])


def attempt(site: Path, task_id: str, now: str, outcome: str, *extra: str) -> tuple[int, str]:
    result = crmd(site, "--now", now, "task", "attempt", task_id, "--outcome", outcome, *extra)
    return result.exit_code, result.stdout + result.stderr


def test_a_refused_call_recorded_twice_sends_one_thank_you(callback: tuple[Path, str]) -> None:
    site, task_id = callback
    assert attempt(site, task_id, "2026-11-05T10:00:00", "refused")[0] == 0
    code, said = attempt(site, task_id, "2026-11-05T10:00:30", "refused")
    assert code == 1
    assert said == (
        f"crmd: a refused attempt on task {task_id} is already recorded at 2026-11-05 "
        f"10:00:00; nothing was recorded. Pass --again to record a second one.\n"
    )
    assert crmd(site, "--now", "2026-11-05T10:05", "tick").exit_code == 0
    assert count(site, fires, fires.c.rule_id == "refused-call-sms") == 1
    assert count(site, outbox, outbox.c.rule_id == "refused-call-sms") == 1


@pytest.mark.parametrize(
    ("second", "recorded"),
    [("2026-11-05T10:00:59", False), ("2026-11-05T10:01:00", True), ("2026-11-05T10:01:01", True)],
)
def test_an_attempt_is_a_repeat_less_than_a_minute_after_the_same_one(
    callback: tuple[Path, str], second: str, recorded: bool
) -> None:
    site, task_id = callback
    assert attempt(site, task_id, "2026-11-05T10:00:00", "no_answer")[0] == 0
    code, _ = attempt(site, task_id, second, "no_answer")
    assert (code == 0) is recorded
    attempts = count(site, events, events.c.type == "task.attempted")
    assert attempts == (2 if recorded else 1)


def test_another_outcome_or_again_is_recorded(callback: tuple[Path, str]) -> None:
    site, task_id = callback
    assert attempt(site, task_id, "2026-11-05T10:00:00", "no_answer")[0] == 0
    assert attempt(site, task_id, "2026-11-05T10:00:10", "powered_off")[0] == 0
    # The previous attempt is powered_off: a no_answer again is no repeat of it.
    assert attempt(site, task_id, "2026-11-05T10:00:20", "no_answer")[0] == 0
    assert attempt(site, task_id, "2026-11-05T10:00:30", "no_answer")[0] == 1
    code, said = attempt(site, task_id, "2026-11-05T10:00:30", "no_answer", "--again")
    assert code == 0, said
    assert "attempt 4 (no_answer)" in said


def event(site: Path, now: str, *args: str) -> tuple[int, str]:
    result = crmd(site, "--now", now, "event", "complaint.opened", "--customer", "C1", *args)
    return result.exit_code, result.stdout + result.stderr


def test_the_same_complaint_recorded_twice_opens_one_task(site: Path) -> None:
    seed(site)
    crmd(site, "--now", "2026-11-05T00:00", "tick")
    assert event(site, "2026-11-05T10:00:00", "--data", "severity=minor")[0] == 0
    code, said = event(site, "2026-11-05T10:00:40", "--data", "severity=minor")
    assert code == 1
    assert said == (
        "crmd: this complaint.opened is already recorded at 2026-11-05 10:00:00; nothing "
        "was recorded. Pass --again to record a second one.\n"
    )
    # The same event time given with --at, later: the same fact again.
    assert (
        event(site, "2026-11-05T10:30", "--at", "2026-11-05T10:00", "--data", "severity=minor")[0]
        == 1
    )
    crmd(site, "--now", "2026-11-05T11:00", "tick")
    assert count(site, fires, fires.c.rule_id == "complaint-to-manager") == 1


def test_other_data_another_minute_again_or_the_same_id_are_no_repeat(site: Path) -> None:
    seed(site)
    assert event(site, "2026-11-05T10:00:00", "--data", "severity=minor", "--id", "K1")[0] == 0
    # The same id again is the documented no-op, not a repeat.
    code, said = event(site, "2026-11-05T10:00:10", "--data", "severity=minor", "--id", "K1")
    assert (code, said) == (0, "already recorded; nothing changed\n")
    assert event(site, "2026-11-05T10:00:20", "--data", "severity=major")[0] == 0
    assert event(site, "2026-11-05T10:01:00", "--data", "severity=minor")[0] == 0
    assert event(site, "2026-11-05T10:01:10", "--data", "severity=minor", "--again")[0] == 0
    assert count(site, events, events.c.type == "complaint.opened") == 4


def test_a_second_refused_call_recorded_on_purpose_would_send_a_second_thank_you(
    callback: tuple[Path, str],
) -> None:
    """What the refusal above saves the customer from: each recorded attempt is a fire."""
    site, task_id = callback
    assert attempt(site, task_id, "2026-11-05T10:00:00", "refused")[0] == 0
    assert attempt(site, task_id, "2026-11-05T10:00:30", "refused", "--again")[0] == 0
    assert crmd(site, "--now", "2026-11-05T10:05", "tick").exit_code == 0
    assert count(site, outbox, outbox.c.rule_id == "refused-call-sms") == 2
