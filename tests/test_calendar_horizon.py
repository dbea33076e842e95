"""The calendar's end seen ahead (issue 14, section 4): warnings 60 days before a rule needs
a year the calendar does not know, failing rules in `crmd status`, a site's own year in
site.yaml, and `crmd plan` into an unknown year.

The shipped site runs on holidays 0.109, which knows China's calendar through 2026; every
time is pinned (`--now`, FixedClock), so nothing depends on the real date.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_cli import crmd
from test_cli import site as _site  # noqa: F401 (a fixture, used by `site` below)
from test_daemon import Records
from test_daemon import logs as _logs  # noqa: F401 (a fixture, used by `logs` below)

from crmd.daemon.clock import FixedClock
from crmd.daemon.instance import InstanceLock, lock_path
from crmd.daemon.service import Daemon
from crmd.engine.horizon import AHEAD, DailyCalendarCheck, calendar_needs
from crmd.engine.report import TickReport
from crmd.errors import ConfigError
from crmd.rules.ruleset import load_rules
from crmd.site import load_site
from crmd.store.database import Unit
from crmd.testing import Harness

REPO = Path(__file__).resolve().parent.parent
LAST = load_site(REPO).calendar.last_published
# The rules of reports.yaml that need the next year within 60 days of 2026-12-04.
NEEDING = {
    "price-tracking",  # the 30th, moved to a working day: 31 December 09:00 asks about 2027
    "daily-board",
    "ad-plan-approval",
    "ad-plan-draft",
    "ad-summary-to-maker",
    "advisor-satisfaction",
    "attendance-sheet",
    "maker-monthly-reports",
    "monthly-cr-report",
    "quarterly-ad-materials",
    "ssi-assessment",
    "weekly-ad-report",
    "ad-plan-to-maker",
}

pytestmark = pytest.mark.skipif(
    LAST != 2026, reason="written for a holidays package that knows China's calendar through 2026"
)


@pytest.fixture
def site(_site: Path) -> Path:  # noqa: F811 (the fixture of that name, imported)
    """A copy of the shipped site with an empty store (test_cli's)."""
    return _site


@pytest.fixture
def logs(_logs: Records) -> Records:  # noqa: F811 (the fixture of that name, imported)
    """The log lines of the `crmd` loggers (test_daemon's)."""
    return _logs


def docs_example() -> str:
    """The complete site.yaml of docs/sites.md, *The working calendar*."""
    text = (REPO / "docs" / "sites.md").read_text(encoding="utf-8")
    section = text[text.index("## The working calendar") :]
    found = re.search(r"```yaml\n(# site.yaml\n.*?)```", section, re.DOTALL)
    assert found is not None
    return found[1]


# ------------------------------------------------------------------ warned 60 days ahead


def test_check_warns_about_2027_today_naming_rules_year_and_remedy(site: Path) -> None:
    result = crmd(site, "--now", "2026-12-04T10:00", "check")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("ok: ")
    (warning,) = [line for line in result.stderr.splitlines() if "calendar for 2027" in line]
    assert warning.startswith("warning: ")
    named = set(re.findall(r"([a-z-]+) \((?:now|\d{4}-\d\d-\d\d \d\d:\d\d)\)", warning))
    assert named == NEEDING
    assert "price-tracking (2026-12-31 09:00)" in warning
    assert "monthly-cr-report (2027-01-01 09:00)" in warning
    assert "published_through: 2027" in warning
    assert "docs/sites.md" in warning


@pytest.mark.parametrize(
    ("now", "warned"),
    [
        ("2026-11-01T08:59", False),  # 60 days and a minute before 31 December 09:00
        ("2026-11-01T09:00", True),  # exactly 60 days before
        ("2026-11-01T09:01", True),
    ],
)
def test_the_warning_starts_60_days_before_the_first_need(
    site: Path, now: str, warned: bool
) -> None:
    result = crmd(site, "--now", now, "check")
    assert result.exit_code == 0
    assert ("calendar for 2027" in result.stderr) is warned
    if warned:
        assert "price-tracking (2026-12-31 09:00)" in result.stderr
        assert "daily-board" not in result.stderr  # 1 January 08:30 is 60 days after 2 Nov


def write_rules(root: Path, text: str) -> None:
    (root / "rules").mkdir(parents=True, exist_ok=True)
    (root / "rules" / "r.yaml").write_text(text, encoding="utf-8")


def needs_of(root: Path, now: str) -> dict[str, tuple[int, datetime]]:
    site = load_site(root)
    at = datetime.fromisoformat(now).replace(tzinfo=site.timezone)
    found = calendar_needs(load_rules(site).rules, site, at)
    return {n.rule_id: (n.year, n.at.astimezone(site.timezone)) for n in found}


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=load_site(REPO).timezone)


def test_each_kind_of_rule_is_probed_through_its_own_fires(tmp_path: Path) -> None:
    write_rules(
        tmp_path,
        """
rules:
  - id: working-day-offset
    when: {event: service.completed, after: 3 working days}
    do: [{task: {role: service_callback, title: t}}]
  - id: working-day-due
    when: {event: sale.delivered}
    do: [{task: {role: sales_callback, title: t, due: 3 working days}}]
  - id: calendar-days
    when: {event: sale.delivered, after: 3 days, at: "09:00"}
    do: [{task: {role: sales_callback, title: t, due: 2 days}}]
  - id: monthly-due-shifted
    when: {monthly: 1, at: "09:00"}
    do: [{task: {role: cr_manager, title: t, due: {day: 10, shift: previous working day}}}]
  - id: weekly-plain
    when: {weekly: monday, at: "09:00"}
    do: [{task: {role: cr_manager, title: t}}]
  - id: birthday-due
    when: {annually: customer.birthday}
    do: [{task: {role: member_specialist, title: t, due: 1 working day}}]
  - id: set-maintenance
    when: {event: service.completed}
    do: [{set: {field: vehicle.next_maintenance, after: 5 working days}}]
  - id: maintenance-before
    when: {date: vehicle.next_maintenance, before: 2 working days}
    do: [{task: {role: service_callback, title: t}}]
  - id: switched-off
    enabled: false
    when: {daily: "09:00", days: working}
    do: [{task: {role: cr_manager, title: t}}]
""",
    )
    needs = needs_of(tmp_path, "2026-12-04 10:00")
    # Calendar days, weekly schedules and disabled rules never need the calendar.
    assert set(needs) == {
        "working-day-offset",
        "working-day-due",
        "monthly-due-shifted",
        "birthday-due",
        "set-maintenance",
        "maintenance-before",
    }
    assert {year for year, _ in needs.values()} == {2027}
    assert needs["monthly-due-shifted"][1] == local("2027-01-01 09:00")
    # An event's fire, due time or set date counted into 2027: asked in the last days of 2026.
    for rule in ("working-day-offset", "working-day-due", "birthday-due", "set-maintenance"):
        assert local("2026-12-20 00:00") <= needs[rule][1] <= local("2027-01-01 00:00"), rule
    # A stored date early in 2027, 2 working days before: read some weeks ahead.
    assert local("2026-12-01 00:00") < needs["maintenance-before"][1] < local("2027-01-01")
    # 60 days before the first need, not a minute earlier.
    first = needs["monthly-due-shifted"][1]
    assert "monthly-due-shifted" not in needs_of(
        tmp_path, (first - AHEAD - timedelta(minutes=1)).replace(tzinfo=None).isoformat()
    )
    assert "monthly-due-shifted" in needs_of(
        tmp_path, (first - AHEAD).replace(tzinfo=None).isoformat()
    )


def test_a_rule_already_failing_is_needed_now(tmp_path: Path) -> None:
    write_rules(
        tmp_path,
        """
rules:
  - id: first-working-day
    when: {monthly: first working day, at: "09:00"}
    do: [{task: {role: cr_manager, title: t}}]
""",
    )
    assert needs_of(tmp_path, "2027-01-02 10:00") == {
        "first-working-day": (2027, local("2027-01-02 10:00"))
    }


# ------------------------------------------------------------------ the daemon, once a day


def test_the_daemon_warns_once_a_day_not_every_tick(
    make_shipped: Callable[..., Harness], logs: Records
) -> None:
    h = make_shipped(files=("reports.yaml",))
    clock = FixedClock(h.local("2026-12-04 10:00"))
    daemon = Daemon(h.site, h.store, clock)

    def warnings() -> int:
        found = [line for line in logs.at_least(logging.WARNING) if "calendar for 2027" in line]
        logs.lines.clear()
        logs.levels.clear()
        return len(found)

    daemon.tick_once()
    assert warnings() == 1
    for at in ("2026-12-04 10:00:30", "2026-12-04 23:59"):
        clock.set(h.local(at))
        daemon.tick_once()
        assert warnings() == 0
    clock.set(h.local("2026-12-05 00:00"))
    daemon.tick_once()
    assert warnings() == 1
    daemon.reload()  # new rules: looked at again on the next tick
    clock.set(h.local("2026-12-05 00:01"))
    daemon.tick_once()
    assert warnings() == 1


def test_the_daily_check_says_nothing_when_no_rule_needs_an_unknown_year(tmp_path: Path) -> None:
    write_rules(
        tmp_path,
        "rules:\n  - id: r\n    when: {monthly: first working day}\n"
        "    do: [{task: {role: cr_manager, title: t}}]\n",
    )
    site = load_site(tmp_path)
    check = DailyCalendarCheck()
    rules = load_rules(site).rules
    assert check.maybe_warn(rules, site, local("2026-10-01 10:00")) == []
    assert len(check.maybe_warn(rules, site, local("2026-11-03 10:00"))) == 1


# ------------------------------------------------------------------ failing rules in status


def status(site: Path, now: str) -> tuple[int, dict[str, Any], str]:
    result = crmd(site, "--now", now, "status", "--json")
    text = crmd(site, "--now", now, "status")
    return result.exit_code, json.loads(result.output), text.output


def test_status_shows_rules_failing_on_every_tick_until_they_succeed(
    site: Path, site_store: str | None
) -> None:
    assert crmd(site, "--now", "2026-12-30T20:00", "tick").exit_code == 0
    code, info, _ = status(site, "2026-12-30T20:01")
    assert info["failing_rules"] == []
    assert crmd(site, "--now", "2027-01-02T10:00", "tick").exit_code == 1
    assert crmd(site, "--now", "2027-01-02T10:05", "tick").exit_code == 1
    lock = None if site_store is not None else InstanceLock(lock_path(load_site(site)))
    if lock is not None:
        lock.acquire()  # as if a daemon ran: status would exit 0 but for the failures
    try:
        code, info, text = status(site, "2027-01-02T10:06")
    finally:
        if lock is not None:
            lock.release()
    if lock is not None:
        assert code == 1
    failing = {f["rule"]: f for f in info["failing_rules"]}
    assert {"price-tracking", "maker-monthly-reports", "daily-board"} <= set(failing)
    assert set(failing) <= NEEDING
    price = failing["price-tracking"]
    assert "2027" in price["error"]
    assert "site.yaml" in price["error"]
    assert datetime.fromisoformat(price["failing_since"]) == local("2027-01-02 10:00")
    assert datetime.fromisoformat(price["last_failed_at"]) == local("2027-01-02 10:05")
    assert "failing: " in text
    assert "price-tracking" in text
    assert "since 2027-01-02 10:00" in text
    # The site supplies 2027: the next tick succeeds, and the failures are gone.
    (site / "site.yaml").write_text(docs_example(), encoding="utf-8")
    assert crmd(site, "--now", "2027-01-02T10:10", "tick").exit_code == 0
    code, info, text = status(site, "2027-01-02T10:11")
    assert info["failing_rules"] == []
    assert "failing" not in text
    assert code == 3  # no daemon runs; nothing fails


def test_a_failing_rule_taken_out_of_the_set_is_no_longer_failing(site: Path) -> None:
    assert crmd(site, "--now", "2026-12-30T20:00", "tick").exit_code == 0
    assert crmd(site, "--now", "2027-01-02T10:00", "tick").exit_code == 1
    (site / "rules" / "reports.yaml").unlink()
    assert crmd(site, "--now", "2027-01-02T10:05", "tick").exit_code == 0
    assert status(site, "2027-01-02T10:06")[1]["failing_rules"] == []


# ------------------------------------------------------------------ a site's own year


def test_the_documented_year_runs_the_rules_through_2027(site: Path) -> None:
    (site / "site.yaml").write_text(docs_example(), encoding="utf-8")
    check = crmd(site, "--now", "2026-12-04T10:00", "check")
    assert check.exit_code == 0
    assert "calendar for" not in check.stderr
    result = crmd(
        site, "--now", "2026-12-04T10:00", "plan", "--from", "2026-12-01", "--to",
        "2027-12-31T00:00", "--json",
    )  # fmt: skip
    plan = json.loads(result.output)
    assert plan["errors"] == []
    assert plan["stops"] == []  # on 31 December 09:00 it needs 2028
    days: dict[str, set[str]] = {}
    for f in plan["fires"]:
        days.setdefault(f["rule"], set()).add(f["fire_at"][:10])
    # The site's make-up Saturday is a working day, its listed weekday off is not.
    assert "2027-02-20" in days["daily-board"]
    assert "2027-02-09" not in days["daily-board"]
    assert "2027-10-08" in days["daily-board"]
    # First working days: 1 February is a Monday; October's is the 8th.
    assert {"2027-02-01", "2027-10-08"} <= days["maker-monthly-reports"]
    # The 15th and 30th move to the previous working day: 15 May is a Saturday.
    assert {"2027-05-14", "2027-12-30"} <= days["price-tracking"]
    # Late in 2027 the next year is warned about.
    later = crmd(site, "--now", "2027-11-15T10:00", "check")
    assert "calendar for 2028" in later.stderr


def test_check_warns_of_a_year_published_through_without_a_day_of_it(site: Path) -> None:
    (site / "site.yaml").write_text("calendar:\n  published_through: 2027\n", encoding="utf-8")
    result = crmd(site, "--now", "2026-12-04T10:00", "check")
    assert result.exit_code == 0
    assert "lists no day off or working day of 2027" in result.stderr
    assert "calendar for 2027" not in result.stderr  # it is published, if barely
    (site / "site.yaml").write_text(docs_example(), encoding="utf-8")
    assert "lists no day off" not in crmd(site, "--now", "2026-12-04T10:00", "check").stderr


@pytest.mark.parametrize(
    ("calendar", "message"),
    [
        ("  days_off: [2027-02-09]\n", "set published_through: 2027"),
        ("  published_through: '2027'\n", "must be a year like 2027"),
        ("  published_through: 1999\n", "before 2001"),
        (
            "  published_through: 2027\n  days_off: [2027-02-20]\n  working_days: [2027-02-20]\n",
            "both as a day off and as a working day",
        ),
    ],
)
def test_a_wrong_calendar_in_site_yaml_is_a_plain_error(
    tmp_path: Path, calendar: str, message: str
) -> None:
    (tmp_path / "site.yaml").write_text("calendar:\n" + calendar, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as caught:
        load_site(tmp_path)
    assert "site.yaml" in str(caught.value)


# ------------------------------------------------------------------ plan into 2027


def test_plan_into_2027_lists_every_fire_it_can_and_marks_where_each_rule_stops(
    site: Path,
) -> None:
    args = ("--now", "2026-12-04T10:00", "plan", "--from", "2026-12-01", "--to", "2027-01-20")
    result = crmd(site, *args, "--json")
    assert result.exit_code == 0
    plan = json.loads(result.output)
    stops = {s["rule"]: s for s in plan["stops"]}
    assert set(stops) == NEEDING
    assert stops["price-tracking"]["at"] == local("2026-12-31 09:00").isoformat()
    assert stops["monthly-cr-report"]["at"] == local("2027-01-01 09:00").isoformat()
    assert stops["weekly-ad-report"]["at"] == local("2027-01-04 08:30").isoformat()
    assert all(s["year"] == 2027 and "site.yaml" in s["reason"] for s in stops.values())
    fired = {(f["rule"], f["fire_at"][:16]) for f in plan["fires"]}
    # Each stopped rule's fires before its stop are there; none after.
    assert ("price-tracking", "2026-12-15T09:00") in fired
    assert ("price-tracking", "2026-12-30T09:00") in fired
    assert ("weekly-ad-report", "2026-12-28T08:30") in fired
    assert ("daily-board", "2026-12-31T08:30") in fired
    for rule, at in fired:
        if rule in stops:
            assert at < stops[rule]["at"][:16], (rule, at)
    # Rules that need no calendar run on through January.
    assert ("complaint-daily-summary", "2027-01-19T17:00") in fired
    text = crmd(site, *args, "--summary")
    assert "stop: rule price-tracking at 2026-12-31 09:00" in text.output
    assert "calendar for 2027 is not published" in text.output
    listing = crmd(site, *args, "--rule", "price-tracking")
    assert "2026-12-30 09:00  price-tracking" in listing.output
    assert "stop: rule price-tracking at 2026-12-31 09:00" in listing.output
    assert "stop: rule daily-board" not in listing.output


def test_an_event_rule_is_planned_up_to_its_stop_and_a_dry_run_daemon_still_fails_it(
    make_site: Callable[[str], Harness],
) -> None:
    h = make_site(
        """
rules:
  - id: service-callback
    when: {event: service.completed, after: 3 working days}
    do:
      - task: {role: service_callback, title: "回访"}
"""
    )
    h.tick("2026-12-01 00:00")
    h.customer("C1")
    h.event("service.completed", "2026-12-20 10:00", "C1")  # fires 2026-12-23 10:00
    h.event("service.completed", "2026-12-29 10:00", "C1")  # 3 working days run into 2027

    def plan(up_to_stops: bool) -> TickReport:
        with Unit(h.store, dry_run=True) as unit:
            return h.engine.tick(
                unit,
                h.local("2027-01-10 00:00"),
                window_start=h.local("2026-12-01 00:00"),
                up_to_stops=up_to_stops,
            )

    planned = plan(up_to_stops=True)
    assert [f.fire_at for f in planned.fires] == [h.local("2026-12-23 10:00")]
    stop = planned.stops["service-callback"]
    assert stop.year == 2027
    # It stops once a tick would read the 29 December event, before it could fire.
    assert h.local("2026-12-29 10:00") < stop.at <= h.local("2027-01-01 10:00")
    assert planned.errors == []
    # A daemon's dry run is no plan: the rule fails and says so, as on a real tick.
    dry = plan(up_to_stops=False)
    assert dry.stops == {}
    assert dry.fires == []
    assert "rule service-callback" in dry.errors[0]
    assert h.fires() == []  # a dry run writes nothing
