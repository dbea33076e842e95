"""Mistakes typed at the `crmd` command: unknown names and ids are errors that say what is
known, instead of quiet answers such as "no tasks"."""

from __future__ import annotations

from pathlib import Path

from test_cli import crmd, seed, site, snapshot, tasks_json

__all__ = ["site"]  # the fixture, shared with test_cli


def test_an_unknown_role_is_an_error_that_suggests_the_nearest(site: Path) -> None:
    seed(site)
    result = crmd(site, "--now", "2026-11-05T00:00", "tasks", "--role", "salse")
    assert result.exit_code == 2, result.output
    assert "no role 'salse'; did you mean 'sales'" in result.stderr
    assert "known: cr_manager, cr_specialist, gm," in result.stderr  # ten roles: all listed
    assert "no tasks" not in result.output
    assert crmd(site, "--now", "2026-11-05T00:00", "tasks", "--role", "sales").exit_code == 0


def test_an_unknown_rule_is_an_error_that_suggests_the_nearest(site: Path) -> None:
    result = crmd(
        site, "plan", "--from", "2026-11-02", "--to", "2026-11-03", "--rule", "sales-calback"
    )
    assert result.exit_code == 2
    assert "no enabled rule 'sales-calback'; did you mean 'sales-callback'" in result.stderr


def test_an_event_for_an_unknown_customer_or_anothers_vehicle_is_refused(site: Path) -> None:
    seed(site)  # customer C1 with vehicle V1
    before = snapshot(site)

    def event(*who: str) -> str:
        result = crmd(site, "--now", "2026-11-03T10:00", "event", "service.completed", *who)
        assert result.exit_code == 1, result.output
        return result.stderr

    assert "crmd: no customer 'C01'; did you mean 'C1'?; known: C1" in event("--customer", "C01")
    assert "crmd: no vehicle 'V2'; known: V1" in event("--customer", "C1", "--vehicle", "V2")
    assert snapshot(site) == before  # nothing recorded
    crmd(site, "--now", "2026-11-03T10:00", "import", str(_second_customer(site)), "--kind",
         "customers")  # fmt: skip
    assert "vehicle 'V1' belongs to customer 'C1', not 'C2'" in event(
        "--customer", "C2", "--vehicle", "V1"
    )


def _second_customer(site: Path) -> Path:
    path = site / "more.csv"
    path.write_text("id,name\nC2,李四\n", encoding="utf-8")
    return path


def test_an_unknown_task_or_message_lists_the_known_ones(site: Path) -> None:
    seed(site)
    crmd(site, "--now", "2026-11-05T00:00", "tick")
    ids = sorted(str(t["id"]) for t in tasks_json(site, "2026-11-05T00:00", "--all"))
    result = crmd(site, "--now", "2026-11-05T10:00", "task", "done", "999")
    assert result.exit_code == 1
    assert result.stderr.startswith("crmd: no task 999")
    if len(ids) <= 12:
        assert f"known: {', '.join(sorted(ids))}" in result.stderr
    else:
        assert "`crmd tasks --all` lists them" in result.stderr
    attempt = crmd(
        site, "--now", "2026-11-05T10:00", "task", "attempt", "999", "--outcome", "reached"
    )
    assert attempt.exit_code == 1
    assert "no task 999" in attempt.stderr
    for verb in ("retry", "cancel"):
        result = crmd(site, "outbox", verb, "77")
        assert result.exit_code == 1
        assert result.stderr.startswith("crmd: no message 77")
