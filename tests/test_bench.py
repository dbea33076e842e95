"""The APScheduler comparison runs end to end with a tiny N (no time is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
