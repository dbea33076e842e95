"""The shipped report and duty deadlines (rules/reports.yaml, DOMAIN.md P20-P33), end to end.

Each test runs the repository's own rule files and site settings on a temp site, driven by an
explicit clock, through the calendar traps of China's official calendar: 调休 make-up working
weekend days, Spring Festival and National Day, month ends of 28 to 31 days, a leap February
and a year whose calendar is not published yet.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row

from crmd.testing import Harness

# rule -> (role, title before the fire date)
REPORTS: dict[str, tuple[str, str]] = {
    "monthly-cr-report": ("cr_manager", "提交上月工作总结及回访报表"),
    "ad-plan-approval": ("cr_manager", "提交下月广告计划审批"),
    "ad-plan-to-maker": ("cr_manager", "报送已批准的下月广告计划至厂家"),
    "ad-plan-draft": ("market_specialist", "拟定下月广告计划"),
    "price-tracking": ("market_specialist", "提交价格跟踪表"),
    "maker-monthly-reports": ("cr_manager", "向厂家提交月度报表"),
    "ad-summary-to-maker": ("cr_manager", "向厂家提交本月广告总结"),
    "attendance-sheet": ("cr_specialist", "提交本月考勤表"),
    "weekly-ad-report": ("cr_manager", "提交展厅广告及效果周报"),
    "daily-board": ("cr_specialist", "更新数据看板"),
    "quarterly-ad-materials": ("cr_manager", "向厂家提交本季度广告销售资料"),
    "ssi-assessment": ("cr_manager", "提交上月 SSI 厂家考核表"),
    "advisor-satisfaction": ("cr_manager", "统计上月 CA/SA 满意度得分并评选最佳顾问"),
}

# (rule, fire time, due time), local times. Comments name the trap each case covers.
SCHEDULES = [
    ("monthly-cr-report", "2026-12-01 09:00", "2026-12-10 17:00"),
    ("monthly-cr-report", "2026-01-01 09:00", "2026-01-09 17:00"),  # 10th a Saturday
    ("monthly-cr-report", "2026-10-01 09:00", "2026-10-10 17:00"),  # make-up Saturday
    ("ad-plan-approval", "2026-12-01 09:00", "2026-12-10 17:00"),
    ("ad-plan-to-maker", "2026-12-11 09:00", "2026-12-15 17:00"),
    ("ad-plan-to-maker", "2026-02-11 09:00", "2026-02-14 17:00"),  # 15th: Spring Festival
    ("ad-plan-draft", "2026-12-01 09:00", "2026-12-11 17:00"),  # 13th a Sunday
    ("ad-plan-draft", "2024-02-01 09:00", "2024-02-09 17:00"),  # 13th a public holiday
    ("price-tracking", "2026-12-15 09:00", "2026-12-15 17:00"),
    ("price-tracking", "2026-12-30 09:00", "2026-12-30 17:00"),  # 31-day month
    ("price-tracking", "2026-11-30 09:00", "2026-11-30 17:00"),  # 30-day month
    ("price-tracking", "2026-02-14 09:00", "2026-02-14 17:00"),  # 15th: Spring Festival
    ("price-tracking", "2026-02-28 09:00", "2026-02-28 17:00"),  # 28-day Feb, make-up Sat
    ("price-tracking", "2024-02-29 09:00", "2024-02-29 17:00"),  # leap February
    ("price-tracking", "2024-09-14 09:00", "2024-09-14 17:00"),  # Mid-Autumn; make-up Sat
    ("price-tracking", "2026-05-29 09:00", "2026-05-29 17:00"),  # 30th a Saturday
    ("maker-monthly-reports", "2026-12-01 09:00", "2026-12-01 17:00"),
    ("maker-monthly-reports", "2026-10-08 09:00", "2026-10-08 17:00"),  # after National Day
    ("maker-monthly-reports", "2026-01-04 09:00", "2026-01-04 17:00"),  # make-up Sunday
    ("ad-summary-to-maker", "2026-12-31 09:00", "2026-12-31 17:00"),  # 31 days
    ("ad-summary-to-maker", "2026-11-30 09:00", "2026-11-30 17:00"),  # 30 days
    ("ad-summary-to-maker", "2026-02-28 09:00", "2026-02-28 17:00"),  # 28 days, make-up Sat
    ("ad-summary-to-maker", "2024-02-29 09:00", "2024-02-29 17:00"),  # 29 days
    ("ad-summary-to-maker", "2026-10-30 09:00", "2026-10-30 17:00"),  # 31st a Saturday
    ("ad-summary-to-maker", "2025-05-30 09:00", "2025-05-30 17:00"),  # 31st Dragon Boat
    ("attendance-sheet", "2026-12-31 09:00", "2026-12-31 17:00"),
    ("weekly-ad-report", "2026-11-30 08:30", "2026-11-30 12:00"),
    ("weekly-ad-report", "2026-10-05 08:30", "2026-10-08 12:00"),  # National Day Monday
    ("weekly-ad-report", "2026-02-16 08:30", "2026-02-24 12:00"),  # Spring Festival Monday
    ("daily-board", "2026-12-01 08:30", "2026-12-01 09:30"),
    ("daily-board", "2026-02-14 08:30", "2026-02-14 09:30"),  # make-up Saturday
    ("daily-board", "2026-02-28 08:30", "2026-02-28 09:30"),  # make-up Saturday
    ("daily-board", "2026-01-04 08:30", "2026-01-04 09:30"),  # make-up Sunday
    ("quarterly-ad-materials", "2026-07-01 09:00", "2026-07-31 17:00"),
    ("quarterly-ad-materials", "2026-10-01 09:00", "2026-10-30 17:00"),  # 31st a Saturday
    ("ssi-assessment", "2026-12-01 09:00", "2026-12-15 17:00"),
    ("ssi-assessment", "2026-02-01 09:00", "2026-02-14 17:00"),  # 15th: Spring Festival
    ("advisor-satisfaction", "2026-12-01 09:00", "2026-12-04 17:00"),
    ("advisor-satisfaction", "2026-10-08 09:00", "2026-10-12 17:00"),  # make-up Saturday
]

IDS = [f"{rule}@{fire[:10]}" for rule, fire, _ in SCHEDULES]


@pytest.fixture
def site(make_shipped: Callable[..., Harness]) -> Harness:
    """All shipped rule files and the site settings, with an empty store."""
    return make_shipped()


def shifted(at: str, minutes: int) -> str:
    return (datetime.fromisoformat(at) + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M")


def start(h: Harness, fire: str) -> None:
    """The rules start 12 hours before the fire under test (a new rule ignores history)."""
    h.tick(shifted(fire, -12 * 60))


def escalations(h: Harness, task: Row[Any]) -> list[Row[Any]]:
    return [t for t in h.tasks("report-overdue") if t.title == f"报表逾期:{task.title}"]


def fire_and_get(h: Harness, rule: str, fire: str) -> Row[Any]:
    start(h, fire)
    h.tick(shifted(fire, -1))
    assert h.tasks(rule) == []
    h.tick(fire)
    (task,) = h.tasks(rule)
    return task


@pytest.mark.parametrize(("rule", "fire", "due"), SCHEDULES, ids=IDS)
def test_report_fires_on_time_with_its_deadline(
    site: Harness, rule: str, fire: str, due: str
) -> None:
    task = fire_and_get(site, rule, fire)
    role, title = REPORTS[rule]
    assert task.role == role
    assert task.title == f"{title}({fire[:10]})"
    assert task.available_at == site.local(fire)
    assert task.due_at == site.local(due)
    assert task.status == "open"
    assert [t.id for t in site.listed(fire, role) if t.rule_id == rule] == [task.id]


@pytest.mark.parametrize(("rule", "fire", "due"), SCHEDULES, ids=IDS)
def test_unsubmitted_report_goes_overdue_and_escalates(
    site: Harness, rule: str, fire: str, due: str
) -> None:
    task = fire_and_get(site, rule, fire)
    site.tick(shifted(due, -1))
    assert escalations(site, task) == []
    report = site.tick(due)
    assert task.id in report.overdue
    (escalation,) = escalations(site, task)
    # The CR manager's own reports go to the GM; everybody else's to the CR manager.
    assert escalation.role == ("gm" if REPORTS[rule][0] == "cr_manager" else "cr_manager")
    assert escalation.available_at == site.local(due)
    assert escalation.due_at == site.local(due) + timedelta(days=1)
    assert task.id not in site.tick(shifted(due, 60)).overdue
    assert len(escalations(site, task)) == 1  # once, not at every tick


@pytest.mark.parametrize(("rule", "fire", "due"), SCHEDULES, ids=IDS)
def test_report_submitted_event_closes_its_task(
    site: Harness, rule: str, fire: str, due: str
) -> None:
    task = fire_and_get(site, rule, fire)
    other = "ad-plan-draft" if rule != "ad-plan-draft" else "monthly-cr-report"
    site.event("report.submitted", shifted(fire, 1), data={"report": other})
    site.tick(shifted(fire, 1))
    assert site.tasks(rule)[0].status == "open"  # another report's submission
    site.event("report.submitted", shifted(fire, 2), data={"report": rule})
    site.tick(shifted(fire, 2))
    (closed,) = site.tasks(rule)
    assert closed.status == "done"
    site.tick(due)
    assert escalations(site, task) == []


@pytest.mark.parametrize(("rule", "fire", "due"), SCHEDULES, ids=IDS)
def test_task_done_closes_the_report(site: Harness, rule: str, fire: str, due: str) -> None:
    task = fire_and_get(site, rule, fire)
    site.done(task.id, shifted(fire, 5))
    assert site.tasks(rule)[0].status == "done"
    site.tick(due)
    assert escalations(site, task) == []


@pytest.mark.postgres_sample
def test_cs_analysis_upload_within_24_hours_of_the_scores(site: Harness) -> None:
    site.tick("2026-12-01 00:00")
    site.tick("2026-12-07 14:59")
    assert site.tasks("cs-analysis-upload") == []
    site.event("cs_score.released", "2026-12-07 15:00")
    site.tick("2026-12-07 15:00")
    (task,) = site.tasks("cs-analysis-upload")
    assert task.role == "cr_manager"
    assert task.title == "上传 CS 分析(2026-12-07 15:00 公布)"
    assert task.due_at == site.local("2026-12-08 15:00")
    site.tick("2026-12-08 14:59")
    assert escalations(site, task) == []
    site.tick("2026-12-08 15:00")
    (escalation,) = escalations(site, task)
    assert escalation.role == "gm"


def test_cs_analysis_closed_by_submission_or_done(site: Harness) -> None:
    site.tick("2026-12-01 00:00")
    site.event("cs_score.released", "2026-12-07 15:00")
    site.event("cs_score.released", "2027-01-07 15:00")
    site.tick("2026-12-07 15:00")
    (first,) = site.tasks("cs-analysis-upload")
    site.event("report.submitted", "2026-12-08 10:00", data={"report": "cs-analysis-upload"})
    site.tick("2026-12-08 10:00")
    assert site.tasks("cs-analysis-upload")[0].status == "done"
    site.tick("2027-01-07 15:00")
    second = site.tasks("cs-analysis-upload")[1]
    site.done(second.id, "2027-01-07 16:00")
    site.tick("2027-01-09 00:00")
    assert [t.status for t in site.tasks("cs-analysis-upload")] == ["done", "done"]
    assert escalations(site, first) == []
    assert escalations(site, second) == []


def fire_days(h: Harness, rule: str) -> list[str]:
    return [h_local_date(h, t.available_at) for t in h.tasks(rule)]


def h_local_date(h: Harness, at: datetime) -> str:
    return at.astimezone(h.site.timezone).date().isoformat()


@pytest.mark.postgres_sample
def test_daily_board_skips_spring_festival_and_works_make_up_saturdays(site: Harness) -> None:
    site.tick("2026-02-12 20:00")
    site.tick("2026-03-02 10:00")
    assert fire_days(site, "daily-board") == [
        "2026-02-13",
        "2026-02-14",  # make-up Saturday
        # 02-15..02-23: Spring Festival (02-16..20 and 02-23 are weekdays off)
        "2026-02-24",
        "2026-02-25",
        "2026-02-26",
        "2026-02-27",
        "2026-02-28",  # make-up Saturday
        "2026-03-02",
    ]


def test_daily_board_skips_national_day(site: Harness) -> None:
    site.tick("2026-09-29 20:00")
    site.tick("2026-10-12 10:00")
    assert fire_days(site, "daily-board") == [
        "2026-09-30",
        "2026-10-08",
        "2026-10-09",
        "2026-10-10",  # make-up Saturday
        "2026-10-12",
    ]


@pytest.mark.postgres_sample
def test_shifted_deadlines_fire_once_not_again_on_the_day_off(site: Harness) -> None:
    site.tick("2026-02-13 20:00")
    site.tick("2026-03-01 10:00")
    assert fire_days(site, "price-tracking") == ["2026-02-14", "2026-02-28"]
    site.tick("2026-05-01 00:00")
    site.tick("2026-06-01 00:00")
    assert fire_days(site, "price-tracking")[2:] == [
        "2026-03-13",  # the 15th a Sunday
        "2026-03-30",
        "2026-04-15",
        "2026-04-30",
        "2026-05-15",
        "2026-05-29",  # the 30th a Saturday
    ]
    assert fire_days(site, "ad-summary-to-maker") == [
        "2026-02-28",  # a make-up Saturday
        "2026-03-31",
        "2026-04-30",
        "2026-05-29",  # the 31st a Sunday, the 30th a Saturday
    ]


def test_weekly_report_fires_on_mondays_only(site: Harness) -> None:
    site.tick("2026-11-01 00:00")
    site.tick("2026-11-30 23:00")
    assert fire_days(site, "weekly-ad-report") == [
        "2026-11-02",
        "2026-11-09",
        "2026-11-16",
        "2026-11-23",
        "2026-11-30",
    ]


def test_maker_reports_on_the_first_working_day_of_each_month(site: Harness) -> None:
    site.tick("2025-12-31 20:00")
    site.tick("2026-12-31 20:00")
    assert fire_days(site, "maker-monthly-reports") == [
        "2026-01-04",  # 1st-3rd New Year, the 4th a make-up Sunday
        "2026-02-02",
        "2026-03-02",
        "2026-04-01",
        "2026-05-06",  # Labour Day 1st-5th
        "2026-06-01",
        "2026-07-01",
        "2026-08-03",
        "2026-09-01",
        "2026-10-08",  # National Day 1st-7th
        "2026-11-02",
        "2026-12-01",
    ]


def test_quarterly_materials_fire_in_the_first_month_of_each_quarter(site: Harness) -> None:
    site.tick("2025-12-31 20:00")
    site.tick("2026-12-31 20:00")
    assert fire_days(site, "quarterly-ad-materials") == [
        "2026-01-01",
        "2026-04-01",
        "2026-07-01",
        "2026-10-01",
    ]


@pytest.mark.postgres_sample
def test_unpublished_calendar_year_is_an_error_not_a_guess(
    make_shipped: Callable[..., Harness], tmp_path: Path, harnesses: list[Harness]
) -> None:
    h = make_shipped()
    last = h.site.calendar.last_published
    year = last + 1
    h.tick(f"{last}-12-31 20:00")
    report = h.tick(f"{year}-01-06 10:00")
    failed = " ".join(report.errors)
    assert str(year) in failed
    for rule in ("maker-monthly-reports", "daily-board", "advisor-satisfaction"):
        assert rule in failed
        assert h.tasks(rule) == []
    # Once the site publishes the year's calendar, the failed fires are retried.
    site_yaml = tmp_path / "site" / "site.yaml"
    site_yaml.write_text(
        site_yaml.read_text(encoding="utf-8")
        + f"calendar:\n  published_through: {year}\n  days_off: [{year}-01-01]\n",
        encoding="utf-8",
    )
    h = Harness(tmp_path / "site", store_url=h.store.url)
    harnesses.append(h)
    report = h.tick(f"{year}-01-06 10:00")
    assert report.errors == []
    (task,) = h.tasks("maker-monthly-reports")
    assert task.available_at >= h.local(f"{year}-01-01 09:00")
    assert h.tasks("daily-board")
