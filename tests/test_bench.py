"""The benchmarks run end to end with a tiny N (no time is asserted)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_vs_apscheduler_runs_both_builds_to_the_last_task(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "vs_apscheduler.py"), "--n", "40", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (run,) = json.loads(out.read_text(encoding="utf-8"))["runs"]
    assert run["n"] == 40
    for build in ("crmd", "apscheduler"):
        # Each build checked its own 40 tasks before it reported finishing.
        assert run[build]["finished"] is True
        assert run[build]["end_to_end_s"] > 0
        assert run[build]["peak_rss_mb"] > 0
    assert run["ratio_extrapolated"] is False
    assert run["apscheduler_over_crmd"] > 0


def test_the_floor_writes_exactly_the_rows_crmd_wrote(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from floor import floor
    finally:
        sys.path.remove(str(REPO / "bench"))
    figures = floor(60, tmp_path)
    assert figures["n"] == 60
    assert figures["floor_end_to_end_s"] >= figures["floor_events_in_s"] >= 0
    assert figures["crmd_end_to_end_s"] > 0
    # The same rows, read back from both stores: nothing lost, added or changed.
    tables = ("events", "fires", "tasks", "customers")
    stores = [tmp_path / "crmd" / "crmd.db", tmp_path / "floor" / "crmd.db"]
    contents = []
    for path in stores:
        with sqlite3.connect(path) as con:
            contents.append(
                {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
            )
    assert len(contents[0]["fires"]) == len(contents[0]["tasks"]) == 60
    assert contents[0] == contents[1]
    # The least store: the deliveries, the ledger rows with an empty detail, the tasks.
    with sqlite3.connect(tmp_path / "least" / "crmd.db") as con:
        least = {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
        detail = [c[1] for c in con.execute("PRAGMA table_info(fires)")].index("detail")
    assert least["tasks"] == contents[0]["tasks"]
    assert [r[:detail] + r[detail + 1 :] for r in least["fires"]] == [
        r[:detail] + r[detail + 1 :] for r in contents[0]["fires"]
    ]
    assert {r[detail] for r in least["fires"]} == {"{}"}
    assert least["events"] == [e for e in contents[0]["events"] if e[2] == "sale.delivered"]
    assert len(least["events"]) == 60
    assert figures["ledger_and_task_only_s"] >= 0


@pytest.mark.timeout(240)
def test_the_cli_bench_times_every_command_over_the_tasks_it_asked_for(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "cli.py"),
            "--tasks",
            "30",
            "--repeat",
            "2",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=200,
    )
    figures = json.loads(out.read_text(encoding="utf-8"))
    assert json.loads(done.stdout) == figures
    # The store held the 30 open tasks asked for (the script counted them, and stops if not).
    assert figures["tasks"] == figures["open_tasks"] == 30
    assert figures["repeat"] == 2
    names = ["python_bare", "python_import_click", "help", "tasks_30", "task_attempt", "check"]
    for name in names:
        assert figures[f"{name}_s"] > 0
        runs = figures[f"{name}_runs_s"]
        assert len(runs) == 2
        assert all(t > 0 for t in runs)
    for ratio in ("python_import_click", "help", "tasks", "task_attempt", "check"):
        assert figures[f"{ratio}_over_bare"] > 0
    assert figures["aims"] == {"help_over_bare": 12, "tasks_over_bare": 40}
    assert "crmd tasks (30 open)" in done.stderr
