"""How long the `crmd` command takes, run as a user runs it: start-up, `--help`, `tasks`
over N open tasks, one `task attempt`, `check` of the shipped rules.

    python bench/cli.py [--quick] [--tasks 3000] [--repeat 7] [--out FILE]

Imports no crmd module: crmd is driven only through its command, `crmd` next to this
interpreter (Path(sys.executable).parent / "crmd"), as a subprocess with its output to a
pipe, over a site this script writes into a temporary directory (site.yaml, one rule file,
CSV files imported with `crmd import`; the site's store is inside that directory). Each
figure is the median wall time of --repeat runs (all listed as *_runs_s), taken in rounds
(each round runs every command once, after one untimed warm-up round), beside a bare
`python -c pass` of the same interpreter and its ratio to that. Prints one JSON object, and
a table on stderr. No time is asserted; what is checked (N open tasks, each command's exit
status) fails loudly. See bench/README.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = Path(sys.executable)
CRMD = PYTHON.parent / "crmd"

# The shipped sales callback (rules/callbacks.yaml, P1), written out here so that every run
# of this script, before or after a change to the shipped rules, measures the same work.
# Alone in the site: one delivery makes one task, and none of the shipped rules' other tasks.
SALES_CALLBACK = """\
rules:
  - id: sales-callback
    description: 销售满意度回访:交车后 N+3 至 N+5 天内致电客户 (P1, 001 §4.4.1 D)
    when: {event: sale.delivered, after: 3 days, at: "00:00"}
    unless: [customer.opted_out]
    do:
      - task:
          role: sales_callback
          title: "销售回访 {{ customer.name }} {{ vehicle.model }}"
          note: "交车 {{ event.at | date }},电话 {{ customer.phone }}"
          due: {after: 2 days, at: "23:59"}
"""

# Site-local instants (site.yaml's time zone, Asia/Shanghai). The rule is first seen by the
# tick at START, so it is in force for the deliveries of 2 March; their callbacks fall due on
# 5 March at 00:00, when the tick at FIRED makes them (on time, as a running daemon would),
# and are due on 7 March at 23:59: at NOW, that morning, every one is open and none overdue.
START = "2026-03-01T08:00"
IMPORTED = "2026-03-02T20:00"
FIRED = "2026-03-05T00:00"
NOW = "2026-03-05T09:00"
# `crmd check` warns of calendar years rules will need soon after now: pinned, so that every
# run does the same work, whatever the date. The "before" figures were taken on this day.
CHECK_NOW = "2026-12-05T09:00"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静强磊军洋勇艳杰娟涛明"
MODELS = ("朗逸", "帕萨特", "途观L", "速腾", "迈腾")

AIMS = {"help_over_bare": 12, "tasks_over_bare": 40}


def environment() -> dict[str, str]:
    """This process's environment without CRMD_* (a CRMD_STORE_URL would move the store
    out of the site; secrets would change what `check` reports)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CRMD_")}


ENV = environment()


def run(args: Sequence[str | Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command with its output to pipes; exit status 0 or SystemExit."""
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=ENV,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(str(a) for a in args)}: exit status {done.returncode}\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return done


def timed(args: Sequence[str | Path], cwd: Path) -> tuple[float, str]:
    """One run's wall time (seconds), from before the fork to the end of its output, and
    its standard output."""
    started = perf_counter()
    done = run(args, cwd)
    return perf_counter() - started, done.stdout


# ---------------------------------------------------------------- the site


def build_site(root: Path, n: int) -> list[int]:
    """A site at `root` whose store holds n open sales-callback tasks at NOW; their ids."""
    (root / "rules").mkdir(parents=True)
    shutil.copy(REPO / "site.yaml", root / "site.yaml")
    (root / "rules" / "callbacks.yaml").write_text(SALES_CALLBACK, encoding="utf-8")
    with (root / "customers.csv").open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "name", "phone", "email", "birthday", "member", "opt_out"])
        for i in range(n):
            name = SURNAMES[i % 20] + GIVEN[i // 20 % 15] + GIVEN[i // 300 % 15]
            birthday = f"{1960 + i % 40}-{1 + i % 12:02d}-{1 + i % 28:02d}"
            member = "true" if i % 3 == 0 else "false"
            row = [f"C{i:07d}", name, f"138{i:08d}", f"c{i}@example.com", birthday, member]
            out.writerow([*row, "false"])
    with (root / "vehicles.csv").open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "customer_id", "vin", "plate", "model"])
        for i in range(n):
            vin, plate = f"LSV{i:014d}", f"粤A{i % 100000:05d}"
            out.writerow([f"V{i:07d}", f"C{i:07d}", vin, plate, MODELS[i % len(MODELS)]])
    with (root / "events.csv").open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "type", "at", "customer_id", "vehicle_id"])
        for i in range(n):
            minutes = 9 * 60 + i * 7 % (9 * 60)  # in opening hours, 09:00-17:59
            at = f"2026-03-02T{minutes // 60:02d}:{minutes % 60:02d}"
            out.writerow([f"D{i:07d}", "sale.delivered", at, f"C{i:07d}", f"V{i:07d}"])

    crmd: list[str | Path] = [CRMD, "--site", root]
    run([*crmd, "--now", START, "tick"], root)
    for kind in ("customers", "vehicles", "events"):
        run([*crmd, "--now", IMPORTED, "import", root / f"{kind}.csv", "--kind", kind], root)
    run([*crmd, "--now", FIRED, "tick"], root)

    if not (root / "store" / "crmd.db").is_file():
        raise SystemExit(f"the site's store is not {root / 'store' / 'crmd.db'}")
    listed = json.loads(run([*crmd, "--now", NOW, "tasks", "--json"], root).stdout)
    stored = count_open_tasks(root / "store" / "crmd.db")
    wrong = [t for t in listed if t["rule"] != "sales-callback" or t["overdue"]]
    if len(listed) != n or stored != n or wrong:
        raise SystemExit(
            f"the site has {stored} open tasks and `crmd tasks` lists {len(listed)} at {NOW} "
            f"({len(wrong)} not an open sales callback), expected {n}"
        )
    return [int(t["id"]) for t in listed]


def count_open_tasks(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (count,) = con.execute("SELECT count(*) FROM tasks WHERE status = 'open'").fetchone()
    finally:
        con.close()
    return int(count)


# ---------------------------------------------------------------- measuring


def load_average() -> str | None:
    try:
        return Path("/proc/loadavg").read_text(encoding="ascii").strip()
    except OSError:
        return None


def measure(workdir: Path, site: Path, ids: list[int], repeat: int) -> dict[str, list[float]]:
    """Each command's wall times: an untimed warm-up round, then `repeat` timed rounds, each
    running every command once (so a busy spell on the machine falls on all of them)."""
    attempts = iter(ids)

    def attempt() -> list[str | Path]:
        return [CRMD, "--site", site, "--now", NOW, "task", "attempt", str(next(attempts))]

    commands: dict[str, Callable[[], list[str | Path]]] = {
        "python_bare": lambda: [PYTHON, "-c", "pass"],
        "python_import_click": lambda: [PYTHON, "-c", "import click"],
        "help": lambda: [CRMD, "--help"],
        "tasks": lambda: [CRMD, "--site", site, "--now", NOW, "tasks"],
        "task_attempt": lambda: [*attempt(), "--outcome", "no_answer"],
        "check": lambda: [CRMD, "--site", REPO, "--now", CHECK_NOW, "check"],
    }
    runs: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(repeat + 1):
        for name, command in commands.items():
            args = command()
            elapsed, output = timed(args, workdir)
            if name == "task_attempt" and not output.endswith("(no_answer); task is open\n"):
                raise SystemExit(f"{' '.join(map(str, args))}: {output!r}")
            if name == "tasks" and len(output.splitlines()) < len(ids):
                raise SystemExit(f"`crmd tasks` printed {len(output.splitlines())} lines")
            if round_:  # the first round is the warm-up
                runs[name].append(elapsed)
    return runs


def figures_of(runs: dict[str, list[float]], n: int) -> dict[str, Any]:
    """Medians, every run and ratios to the bare interpreter; `crmd tasks` is named by its
    number of open tasks (tasks_3000_s)."""
    names = {
        "python_bare": "python_bare_s",
        "python_import_click": "python_import_click_s",
        "help": "help_s",
        "tasks": f"tasks_{n}_s",
        "task_attempt": "task_attempt_s",
        "check": "check_s",
    }
    out: dict[str, Any] = {}
    for name, key in names.items():
        out[key] = round(statistics.median(runs[name]), 4)
        out[f"{key[:-2]}_runs_s"] = [round(t, 4) for t in runs[name]]
    bare = out["python_bare_s"]
    for name, key in names.items():
        if name != "python_bare":
            out[f"{name}_over_bare"] = round(out[key] / bare, 1)
    out["aims"] = AIMS
    return out


def table(figures: dict[str, Any]) -> str:
    n = figures["tasks"]
    rows = [
        ("python -c pass", "python_bare", None),
        ("python -c 'import click'", "python_import_click", "python_import_click_over_bare"),
        ("crmd --help", "help", "help_over_bare"),
        (f"crmd tasks ({n} open)", f"tasks_{n}", "tasks_over_bare"),
        ("crmd task attempt", "task_attempt", "task_attempt_over_bare"),
        ("crmd check (shipped rules)", "check", "check_over_bare"),
    ]
    lines = [f"{'command':<28} {'median s':>9} {'min s':>8} {'max s':>8} {'x bare':>7} {'aim':>5}"]
    for label, name, ratio in rows:
        key = f"{name}_s"
        every = figures[f"{name}_runs_s"]
        x = f"{figures[ratio]:.1f}" if ratio else "1.0"
        aim = str(AIMS[ratio]) if ratio in AIMS else ""
        lines.append(
            f"{label:<28} {figures[key]:>9.4f} {min(every):>8.4f} {max(every):>8.4f} "
            f"{x:>7} {aim:>5}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="300 tasks, 3 runs: a smoke run")
    parser.add_argument("--tasks", type=int, help="open tasks in the store (default 3000)")
    parser.add_argument("--repeat", type=int, help="timed runs of each command (default 7)")
    parser.add_argument("--out", type=Path, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    n = args.tasks or (300 if args.quick else 3000)
    repeat = args.repeat or (3 if args.quick else 7)
    if repeat < 1 or n < repeat + 1:
        parser.error("--repeat must be at least 1, and --tasks more than --repeat")
    if not CRMD.is_file():
        raise SystemExit(f"no crmd command at {CRMD}: install crmd into this interpreter's env")
    started = perf_counter()
    figures: dict[str, Any] = {
        "quick": args.quick,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "tasks": n,
        "repeat": repeat,
        "load_average_before": load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="crmd-bench-cli-") as tmp:
        workdir = Path(tmp)
        built = perf_counter()
        ids = build_site(workdir / "site", n)
        figures["site_build_s"] = round(perf_counter() - built, 2)
        figures["open_tasks"] = len(ids)
        runs = measure(workdir, workdir / "site", ids, repeat)
    figures.update(figures_of(runs, n))
    figures["load_average_after"] = load_average()
    figures["total_s"] = round(perf_counter() - started, 1)
    text = json.dumps(figures, indent=2, ensure_ascii=False)
    print(text)
    print(table(figures), file=sys.stderr)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
