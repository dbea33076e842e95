"""The `crmd` command, as a user types it, against a site directory with a real SQLite store."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from test_failed_fires import RAISING

from crmd.cli.commands import main
from crmd.cli.fireview import LinesByTime
from crmd.site import load_site
from crmd.store.database import Store
from crmd.store.tables import metadata

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path, site_store: str | None) -> Path:
    """A copy of the shipped site (rules and settings), with an empty store."""
    root = tmp_path / "site"
    shutil.copytree(REPO / "rules", root / "rules")
    shutil.copy(REPO / "site.yaml", root / "site.yaml")
    return root


def crmd(site: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--site", str(site), *args], catch_exceptions=False)


def test_check_passes_on_the_shipped_rules(site: Path) -> None:
    result = crmd(site, "check")
    assert result.exit_code == 0, result.output
    assert "rules/callbacks.yaml: " in result.output
    assert result.output.strip().splitlines()[-1].startswith("ok: ")


def test_check_reports_file_line_col_and_exits_1(site: Path) -> None:
    (site / "rules" / "broken.yaml").write_text(
        "rules:\n  - id: x\n    when: {event: sale.delivered, aftr: 3 days}\n    do: []\n",
        encoding="utf-8",
    )
    result = crmd(site, "check")
    assert result.exit_code == 1
    assert "rules/broken.yaml:3:" in result.stderr
    assert "aftr" in result.stderr


def seed(site: Path) -> None:
    (site / "customers.csv").write_text(
        "id,name,phone,email,birthday,member,opt_out\nC1,张三,13800138000,,1990-05-01,true,false\n",
        encoding="utf-8-sig",
    )
    (site / "vehicles.csv").write_text(
        "id,customer_id,vin,plate,model\nV1,C1,LSV123,粤A12345,朗逸\n", encoding="utf-8"
    )
    assert crmd(site, "--now", "2026-11-01T08:00", "tick").exit_code == 0
    assert crmd(site, "import", str(site / "customers.csv"), "--kind", "customers").exit_code == 0
    assert crmd(site, "import", str(site / "vehicles.csv"), "--kind", "vehicles").exit_code == 0
    result = crmd(
        site,
        "--now",
        "2026-11-02T15:00",
        "event",
        "sale.delivered",
        "--customer",
        "C1",
        "--vehicle",
        "V1",
        "--data",
        "advisor=小李",
    )
    assert result.exit_code == 0, result.output


def tasks_json(site: Path, now: str, *extra: str) -> list[dict[str, object]]:
    """Tasks as `crmd tasks --json` lists them; by default only the sales callbacks."""
    if "--role" not in extra and "--all" not in extra and "any" not in extra:
        extra = (*extra, "--role", "sales_callback")
    extra = tuple(e for e in extra if e != "any")
    result = crmd(site, "--now", now, "tasks", "--json", *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_event_tick_and_tasks_window(site: Path) -> None:
    seed(site)
    assert crmd(site, "--now", "2026-11-04T23:59", "tick").exit_code == 0
    assert tasks_json(site, "2026-11-04T23:59") == []
    result = crmd(site, "--now", "2026-11-05T00:00", "tick")
    assert result.exit_code == 0
    assert "1 fired" in result.output
    (task,) = tasks_json(site, "2026-11-05T00:00")
    assert task["rule"] == "sales-callback"
    assert task["role"] == "sales_callback"
    assert task["title"] == "销售回访 张三 朗逸"
    assert task["customer_id"] == "C1"
    assert task["vehicle_id"] == "V1"
    assert task["available_at"] == "2026-11-05T00:00:00+08:00"
    assert task["due_at"] == "2026-11-07T23:59:00+08:00"
    assert task["status"] == "open"
    assert task["overdue"] is False
    # Before its window the task exists but is not listed; --all shows it.
    assert tasks_json(site, "2026-11-04T12:00") == []
    everything = tasks_json(site, "2026-11-04T12:00", "--all")
    assert [t["rule"] for t in everything].count("sales-callback") == 1
    (late,) = tasks_json(site, "2026-11-08T00:00")
    assert late["overdue"] is True
    # The sales department's own delivery care (P2) is listed for `sales`, the callback not.
    assert {t["rule"] for t in tasks_json(site, "2026-11-05T00:00", "--role", "sales")} == {
        "delivery-care-2h",
        "delivery-followup",
    }
    assert {t["rule"] for t in tasks_json(site, "2026-11-05T00:00", "any")} >= {
        "sales-callback",
        "delivery-care-2h",
        "delivery-followup",
        "complaint-daily-summary",
        "daily-board",
        "monthly-cr-report",
    }


def test_attempts_and_done(site: Path) -> None:
    seed(site)
    crmd(site, "--now", "2026-11-05T00:00", "tick")
    (task,) = tasks_json(site, "2026-11-05T10:00")
    tid = str(task["id"])
    result = crmd(
        site, "--now", "2026-11-05T10:00", "task", "attempt", tid, "--outcome", "no_answer"
    )
    assert result.exit_code == 0
    assert "attempt 1" in result.output
    assert "open" in result.output
    result = crmd(
        site,
        "--now",
        "2026-11-05T11:00",
        "task",
        "attempt",
        tid,
        "--outcome",
        "reached",
        "--score",
        "9",
    )
    assert "done" in result.output
    assert tasks_json(site, "2026-11-05T11:00") == []
    result = crmd(site, "task", "done", tid)
    assert result.exit_code == 1
    assert "already done" in result.stderr
    result = crmd(site, "task", "done", "999")
    assert result.exit_code == 1
    assert "no task 999" in result.stderr


def snapshot(site: Path) -> list[tuple[object, ...]]:
    """Every row of every table, to prove a command wrote nothing."""
    store = Store(load_site(site).store_url)
    try:
        with store.read() as conn:
            return [
                (table.name, *row)
                for table in metadata.sorted_tables
                for row in conn.execute(select(table).order_by(*table.primary_key))
            ]
    finally:
        store.dispose()


def test_plan_lists_fires_and_writes_nothing(site: Path) -> None:
    seed(site)
    crmd(site, "--now", "2026-11-02T16:00", "tick")
    before = snapshot(site)
    result = crmd(
        site,
        "--now",
        "2026-11-02T16:00",
        "plan",
        "--from",
        "2026-11-02T16:00",
        "--to",
        "2026-12-01T00:00",
        "--json",
    )
    assert result.exit_code == 0, result.output
    planned = json.loads(result.output)["fires"]
    rules = sorted({f["rule"] for f in planned})
    assert "sales-callback" in rules
    assert "monthly-cr-report" not in rules  # its next fire is 1 December 09:00
    callback = next(f for f in planned if f["rule"] == "sales-callback")
    assert callback["fire_at"] == "2026-11-05T00:00:00+08:00"
    assert callback["actions"][0]["title"] == "销售回访 张三 朗逸"
    assert tasks_json(site, "2026-11-06T00:00") == []
    assert snapshot(site) == before


def test_plan_marks_only_a_catch_up_late_and_summarises_per_rule(site: Path) -> None:
    seed(site)
    crmd(site, "--now", "2026-11-02T16:00", "tick")

    def plan(now: str, *extra: str) -> Result:
        window = ("--from", "2026-11-02T16:00", "--to", "2026-12-02T16:00")
        result = crmd(site, "--now", now, "plan", *window, *extra)
        assert result.exit_code == 0, result.output
        return result

    def sales_callback(now: str) -> dict[str, Any]:
        fires = json.loads(plan(now, "--json", "--rule", "sales-callback").output)["fires"]
        (fire,) = fires
        return cast(dict[str, Any], fire)

    # Planned ahead, the 5 November callback fires on time; planned from 6 November, when
    # the daemon has been down since the 2nd, it is a catch-up and late.
    assert sales_callback("2026-11-02T16:00")["late"] is False
    assert sales_callback("2026-11-05T00:15")["late"] is False
    assert sales_callback("2026-11-05T00:16")["late"] is True
    summary = plan("2026-11-02T16:00", "--summary").output
    assert "assuming no task is closed" in summary
    line = next(row for row in summary.splitlines() if row.startswith("monthly-cr-report"))
    assert "(P20" in line
    assert "1 task cr_manager" in line
    assert "2026-12-01 09:00" in line
    assert "销售回访" not in summary  # --summary leaves out the fires themselves
    detail = plan("2026-11-02T16:00", "--rule", "monthly-cr-report").output
    assert "提交上月工作总结及回访报表" in detail
    assert "销售回访" not in detail
    unknown = crmd(site, "plan", "--from", "2026-11-02", "--to", "2026-11-03", "--rule", "nope")
    assert unknown.exit_code == 2
    assert "no enabled rule 'nope'" in unknown.output + unknown.stderr


def test_tick_and_plan_describe_every_kind_of_action(site: Path) -> None:
    """The shipped rules set dates, emit events, cancel and complete tasks: all printable."""
    seed(site)
    crmd(site, "--now", "2026-11-02T16:00", "tick")
    for kind, data in (("service.completed", "mileage=12000"), ("complaint.resolved", "score=3")):
        result = crmd(
            site, "--now", "2026-11-03T10:00", "event", kind, "--customer", "C1",
            "--vehicle", "V1", "--data", data,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
    result = crmd(site, "--now", "2026-11-03T10:00", "tick")
    assert result.exit_code == 0, result.output
    assert "set vehicle.next_maintenance to 6 months or 5000 km ahead" in result.output
    assert "cancel open tasks of maintenance-reminder, maintenance-due" in result.output


def test_a_month_of_a_demo_store_planned_by_policy(site: Path) -> None:
    """What a manager audits: every kind of policy shows up in a month's plan of a store."""
    now = "2026-11-23T10:00"
    result = crmd(site, "--now", now, "demo", "--customers", "300", "--days", "7")
    assert result.exit_code == 0, result.output
    window = ("--from", now, "--to", "2026-12-23T10:00")
    result = crmd(site, "--now", now, "plan", *window, "--json")
    assert result.exit_code == 0, result.output
    fires = json.loads(result.output)["fires"]
    counts: dict[str, int] = {}
    for f in fires:
        counts[f["rule"]] = counts.get(f["rule"], 0) + 1
    monthly = ("monthly-cr-report", "ad-plan-draft", "maker-monthly-reports", "ssi-assessment")
    assert all(counts.get(rule) == 1 for rule in monthly), counts
    assert counts["weekly-ad-report"] == 4  # Mondays 30 Nov .. 21 Dec
    assert counts["price-tracking"] == 2  # 30 November, 15 December
    assert counts["daily-board"] == 22  # working days 24 Nov .. 23 Dec
    for rule in ("sales-callback", "service-callback", "break-in-reminder", "birthday-sms"):
        assert counts.get(rule, 0) > 0, rule
    assert not any(f["late"] for f in fires)  # all ahead of the clock
    # Listed by time, not rule by rule: the rules' fires interleave.
    times = [datetime.fromisoformat(f["fire_at"]) for f in fires]
    assert times == sorted(times)
    rules_in_order = [f["rule"] for f in fires]
    changes = sum(a != b for a, b in pairwise(rules_in_order))
    assert changes > len(counts)
    text = crmd(site, "--now", now, "plan", *window).output.splitlines()[1:]
    assert [line.split("  ")[0] for line in text[: len(fires)]] == [
        f"{t:%Y-%m-%d %H:%M}" for t in times
    ]
    summary = crmd(site, "--now", now, "plan", *window, "--summary").output
    assert "by rule" in summary
    line = next(r for r in summary.splitlines() if r.startswith("birthday-sms"))
    assert line.rstrip().endswith(f"{counts['birthday-sms']} sms")


def test_bad_now_is_a_clear_error(site: Path) -> None:
    result = CliRunner().invoke(main, ["--site", str(site), "--now", "yesterday", "tasks"])
    assert result.exit_code == 2
    assert "ISO-8601" in result.output + result.stderr


def test_demo_then_daemon_once_creates_tasks(site: Path) -> None:
    result = crmd(site, "--now", "2026-11-23T10:00", "demo")
    assert result.exit_code == 0, result.output
    assert crmd(site, "--now", "2026-11-23T10:00", "demo").exit_code == 1  # not twice
    dry = crmd(site, "--now", "2026-11-23T10:00", "run", "--once", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert tasks_json(site, "2026-11-23T10:00", "--all") == []  # the dry run wrote nothing
    result = crmd(site, "--now", "2026-11-23T10:00", "run", "--once")
    assert result.exit_code == 0, result.output
    listed = tasks_json(site, "2026-11-23T10:00", "any")
    assert {t["rule"] for t in listed} >= {"sales-callback", "service-callback"}
    assert all(t["available_at"] <= "2026-11-23T10:00:00+08:00" for t in listed)


def test_the_store_url_in_site_yaml_is_the_store_used(
    tmp_path: Path, store_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRMD_STORE_URL", raising=False)
    site = tmp_path / "site"
    (site / "rules").mkdir(parents=True)
    shutil.copy(REPO / "rules" / "reports.yaml", site / "rules" / "reports.yaml")
    # A relative SQLite path is relative to the site; a PostgreSQL URL is used as it is.
    url = store_url or "sqlite:///elsewhere/crmd.db"
    (site / "site.yaml").write_text(f"store: {url}\n", encoding="utf-8")
    assert crmd(site, "--now", "2026-11-23T10:00", "tick").exit_code == 0
    assert not (site / "store" / "crmd.db").exists()
    store = Store(load_site(site).store_url)
    assert store.url == (store_url or f"sqlite:///{site / 'elsewhere' / 'crmd.db'}")
    try:
        assert store.revision() == store.head_revision()
    finally:
        store.dispose()


def test_lines_come_back_by_time_then_in_the_order_they_came() -> None:
    noon, later = datetime(2026, 11, 5, 12, tzinfo=UTC), datetime(2026, 11, 6, 1, tzinfo=UTC)
    in_shanghai = later.astimezone(ZoneInfo("Asia/Shanghai"))  # the same instant, elsewhere
    lines = LinesByTime()
    try:
        for text, at in [("b", later), ("a", noon), ("c", in_shanghai), ("d", noon)]:
            lines.add(at, text)
        assert list(lines) == ["a", "d", "b", "c"]
    finally:
        lines.close()


def test_fires_lists_retries_and_dismisses_failed_fires(site: Path) -> None:
    (site / "rules" / "extra.yaml").write_text(RAISING, encoding="utf-8")
    with (site / "site.yaml").open("a", encoding="utf-8") as settings:
        settings.write("event_types: {survey.scored: {fields: [score]}}\n")
    assert crmd(site, "--now", "2026-03-01T00:00", "tick").exit_code == 0
    (site / "c.csv").write_text("id,name,phone\nC1,张三,13800138000\n", encoding="utf-8")
    imported = crmd(
        site, "--now", "2026-03-01T00:01", "import", str(site / "c.csv"), "--kind", "customers"
    )
    assert imported.exit_code == 0
    for n, score in ((1, 0), (2, 0)):
        recorded = crmd(
            site,
            "--now",
            "2026-03-02T10:00",
            "event",
            "survey.scored",
            "--customer",
            "C1",
            "--id",
            f"S{n}",
            "--data",
            f"score={score}",
            *(["--again"] if n == 2 else []),  # a second survey of the same minute
        )
        assert recorded.exit_code == 0, recorded.output
    result = crmd(site, "--now", "2026-03-02T10:01", "tick")
    assert "2 failed" in result.output
    assert "2 failed fire(s) pending" in result.stderr
    listed = crmd(site, "fires", "--failed", "--json")
    assert listed.exit_code == 1
    rows = json.loads(listed.stdout)
    assert [(r["rule"], r["status"]) for r in rows] == [("score-ratio", "failed")] * 2
    assert "ZeroDivisionError" in rows[0]["reason"]
    table = crmd(site, "fires", "--failed")
    assert "score-ratio" in table.stdout
    assert "failed" in table.stdout
    status = crmd(site, "--now", "2026-03-02T10:02", "status", "--json")
    assert json.loads(status.stdout)["failed_fires"] == 2
    assert status.exit_code != 0
    # The manager fixes the rule; one fire is retried at once, the other dismissed.
    (site / "rules" / "extra.yaml").write_text(
        RAISING.replace("100 // (event.score | int(1))", "event.score"), encoding="utf-8"
    )
    first, second = sorted(r["id"] for r in rows)
    retried = crmd(site, "--now", "2026-03-02T10:03", "fires", "retry", str(first))
    assert retried.exit_code == 0, retried.output
    assert "1 fire(s) tried again: 1 done, 0 failed" in retried.output
    dismissed = crmd(site, "fires", "dismiss", str(second), "--reason", "测试数据")
    assert dismissed.exit_code == 0, dismissed.output
    assert crmd(site, "fires", "--failed").exit_code == 0
    every = {r["id"]: r for r in json.loads(crmd(site, "fires", "--json").stdout)}
    assert every[first]["status"] == "fired"
    assert every[second]["status"] == "dismissed"
    assert every[second]["dismissed"]["reason"] == "测试数据"
    # A dismissed fire is never tried again, even by --all.
    crmd(site, "--now", "2026-03-02T10:04", "fires", "retry", "--all")
    assert json.loads(crmd(site, "fires", "--json").stdout)[0]["status"] in ("fired", "dismissed")
    after = {r["id"]: r["status"] for r in json.loads(crmd(site, "fires", "--json").stdout)}
    assert (after[first], after[second]) == ("fired", "dismissed")
    # A misspelt rule is an error with the nearest, not "no such fires".
    misspelt = crmd(site, "fires", "--rule", "score-ratoi")
    assert misspelt.exit_code == 2
    assert "score-ratio" in misspelt.output
    assert "score-ratio" in crmd(site, "fires", "--rule", "score-ratio").stdout
    tasks = json.loads(crmd(site, "--now", "2026-03-02T10:05", "tasks", "--json").stdout)
    assert [t["title"] for t in tasks if t["rule"] == "score-ratio"] == ["0"]
    unknown = crmd(site, "--now", "2026-03-02T10:05", "fires", "retry", "999")
    assert unknown.exit_code == 2
    assert "no failed fire 999" in unknown.output


@pytest.mark.parametrize(
    "args",
    [("tasks",), ("--now", "2026-11-23T10:00", "tick"), ("status",), ("outbox",), ("check",)],
)
def test_a_directory_without_site_yaml_is_no_site_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.delenv("CRMD_SITE", raising=False)
    monkeypatch.delenv("CRMD_STORE_URL", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"crmd: no crmd site in {empty}: it has no site.yaml.")
    assert f"create {empty / 'site.yaml'}" in result.stderr
    assert "--site DIR" in result.stderr
    assert "Traceback" not in result.output
    assert list(empty.iterdir()) == []  # no store/, no crmd.db
    # The same through --site.
    named = CliRunner().invoke(main, ["--site", str(empty), *args])
    assert named.exit_code == 1
    assert "no crmd site in" in named.stderr
    assert list(empty.iterdir()) == []


def test_commands_over_a_directory_of_sites_need_no_site_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRMD_SITE", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "group").mkdir()
    result = CliRunner().invoke(main, ["--now", "2026-11-23T10:00", "sites", "group"])
    assert result.exit_code == 3, result.output  # no sites there: not an error of --now
    assert "no sites in group" in result.output
