"""The CLI's import boundary: `crmd --help` and `crmd <command> --help` load no store, engine,
rule language or heavy library, so the commands people type all day start at once.

Each check runs in a fresh interpreter (the test process has long imported everything) and
looks at sys.modules afterwards: a boundary, not a time, so a busy machine cannot fail it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# What a --help must not pull in: the libraries that cost the start-up time, and crmd's own
# packages below the CLI (the engine, the store, the rule language).
HEAVY = ("sqlalchemy", "alembic", "jsonschema", "jinja2", "rich", "holidays", "mako", "twilio")
CRMD_BELOW = ("crmd.engine", "crmd.store", "crmd.rules", "crmd.intake", "crmd.calendar")

PROBE = """
import json, sys
import click
from crmd.cli.commands import main

def every_command(command, path):
    yield path
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from every_command(sub, [*path, name])

ran = []
for path in every_command(main, []):
    args = [*path, "--help"]
    try:
        main(args, standalone_mode=False)
    except SystemExit:
        pass
    ran.append(" ".join(args))
json.dump({"ran": ran, "modules": sorted(sys.modules)}, sys.stdout)
"""


def loaded_after(code: str, cwd: Path) -> dict[str, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    # The help texts went to stdout too; the JSON is the last line's object.
    result: dict[str, list[str]] = json.loads(out[out.rindex('{"ran"') :])
    return result


def offenders(modules: list[str]) -> list[str]:
    return [
        m
        for m in modules
        if m.split(".")[0] in HEAVY or any(m == p or m.startswith(p + ".") for p in CRMD_BELOW)
    ]


@pytest.mark.timeout(120)
def test_help_of_every_command_loads_nothing_heavy(tmp_path: Path) -> None:
    result = loaded_after(PROBE, tmp_path)
    # Every command and subcommand was asked for its help (not only the root).
    assert "--help" in result["ran"]
    assert "task attempt --help" in result["ran"]
    assert "outbox retry --help" in result["ran"]
    assert "fires dismiss --help" in result["ran"]
    assert offenders(result["modules"]) == []


@pytest.mark.timeout(120)
def test_the_probe_sees_what_a_real_command_loads(tmp_path: Path) -> None:
    # The same probe, after a command that works on a store: the heavy modules show up, so
    # the empty list above means they were not loaded, not that the probe cannot see them.
    (tmp_path / "site.yaml").write_text("name: probe\ntimezone: Asia/Shanghai\n")
    code = PROBE.replace(
        "ran = []",
        "ran = []\ntry:\n    main(['tasks'], standalone_mode=False)\nexcept SystemExit:\n    pass",
    )
    found = offenders(loaded_after(code, tmp_path)["modules"])
    assert "sqlalchemy" in found
    assert "crmd.store.database" in found
