"""A writing command's --now may not lie before the store's last tick (crmd.store.nowguard): a
what-if belongs to `crmd plan`, which writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemon_child import RULES
from sqlalchemy import update
from test_cli import crmd, seed, site, snapshot, tasks_json

from crmd.site import load_site
from crmd.store.database import Store
from crmd.store.tables import daemon, rule_state
from crmd.testing import Harness

__all__ = ["site"]  # the fixture, shared with test_cli

LAST_TICK = "2026-11-05T00:00"
BEFORE, AT, AFTER = "2026-11-04T23:59:59", "2026-11-05T00:00:00", "2026-11-05T00:00:01"


@pytest.fixture
def ticked(site: Path) -> tuple[Path, str]:
    """The shipped site with C1 and V1, ticked up to LAST_TICK; and the id of a task."""
    seed(site)
    assert crmd(site, "--now", LAST_TICK, "tick").exit_code == 0
    (task,) = tasks_json(site, LAST_TICK)
    return site, str(task["id"])


def writes(task_id: str, csv: Path) -> list[tuple[str, ...]]:
    return [
        ("tick",),
        ("event", "service.completed", "--customer", "C1", "--vehicle", "V1"),
        ("import", str(csv), "--kind", "customers"),
        ("task", "attempt", task_id, "--outcome", "no_answer"),
        ("task", "done", task_id),
        ("run", "--once"),
    ]


def customers_csv(site: Path) -> Path:
    path = site / "new.csv"
    path.write_text("id,name\nC9,王五\n", encoding="utf-8")
    return path


def test_a_writing_command_before_the_last_tick_is_refused_and_writes_nothing(
    ticked: tuple[Path, str],
) -> None:
    site, task_id = ticked
    before = snapshot(site)
    for args in writes(task_id, customers_csv(site)):
        result = crmd(site, "--now", BEFORE, *args)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.splitlines()[-1].startswith(  # `run` logs before it
            f"crmd: --now 2026-11-04T23:59:59 is before 2026-11-05 00:00:00, the time this "
            f"store has been evaluated up to (its last tick); `crmd {args[0]}"
        ), result.stderr
        assert "`crmd --now 2026-11-04T23:59:59 plan`" in result.stderr
        assert "Traceback" not in result.output
    assert snapshot(site) == before


@pytest.mark.parametrize("now", [AT, AFTER])
def test_a_writing_command_at_or_after_the_last_tick_runs(
    ticked: tuple[Path, str], now: str
) -> None:
    site, task_id = ticked
    for args in writes(task_id, customers_csv(site)):
        result = crmd(site, "--now", now, *args)
        assert result.exit_code == 0, (args, result.output)


def test_plan_reading_commands_and_a_dry_run_are_never_refused(ticked: tuple[Path, str]) -> None:
    site, _ = ticked
    before = snapshot(site)
    for args in (
        ("plan", "--to", "2026-11-10T00:00"),
        ("plan",),
        ("tasks", "--all"),
        ("outbox",),
        ("run", "--once", "--dry-run"),
        ("check",),
    ):
        result = crmd(site, "--now", "2026-11-01T00:00", *args)
        assert result.exit_code == 0, (args, result.output)
    status = crmd(site, "--now", "2026-11-01T00:00", "status")
    assert status.exit_code == 3  # no daemon: its own answer, not a refusal
    assert snapshot(site) == before


def test_the_real_clock_and_a_first_use_are_never_refused(site: Path) -> None:
    # An empty store has no last tick: any --now is its first.
    assert crmd(site, "--now", "2020-01-01T00:00", "tick").exit_code == 0
    assert crmd(site, "tick").exit_code == 0  # the real clock, after 2020


def test_a_daemons_last_tick_counts_too(ticked: tuple[Path, str]) -> None:
    site, _ = ticked
    assert crmd(site, "--now", AFTER, "run", "--once").exit_code == 0
    store = Store(load_site(site).store_url)
    try:
        with store.write() as conn:  # rules' watermarks back: the daemon's tick remains
            conn.execute(update(rule_state).values(watermark=rule_state.c.since))
            assert conn.execute(update(daemon).values(state="stopped")).rowcount == 1
    finally:
        store.dispose()
    result = crmd(site, "--now", AT, "tick")
    assert result.exit_code == 1
    assert "is before 2026-11-05 00:00:01" in result.stderr


def test_run_sites_leaves_out_a_site_whose_last_tick_is_after_now(tmp_path: Path) -> None:
    group = tmp_path / "group"
    ahead, fresh = Harness(group / "ahead", RULES), Harness(group / "fresh", RULES)
    ahead.tick("2026-11-05 00:00")
    for h in (ahead, fresh):
        h.store.dispose()
    result = crmd(group / "ahead", "--now", BEFORE, "run", "--sites", str(group), "--once")
    assert result.exit_code == 0, result.output  # the fresh site ran
    assert "site ahead left out: --now 2026-11-04T23:59:59 is before 2026-11-05 00:00:00" in (
        result.stderr
    )
    assert "site fresh left out" not in result.stderr
    alone = tmp_path / "alone"
    alone.mkdir()
    (group / "ahead").rename(alone / "ahead")
    result = crmd(alone / "ahead", "--now", BEFORE, "run", "--sites", str(alone), "--once")
    assert result.exit_code == 1
    assert "could start (ahead: --now 2026-11-04T23:59:59 is before" in result.stderr
