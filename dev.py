#!/usr/bin/env python3
"""Set-up commands for crmd that need nothing but Python 3.11+.

    python3 dev.py run     make .venv, install crmd, fill a demo store, start the daemon
    python3 dev.py test    make .venv, install crmd and its test tools, run the whole suite

Both create the virtual environment `.venv` on first use and reinstall only when
pyproject.toml changes. Extra arguments go to `crmd run` or to pytest.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".crmd-installed"


def sh(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT, env=env)
    if code:
        sys.exit(code)


def ensure_venv() -> None:
    """Create .venv and install crmd (editable, with test tools) when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be run by an older python3
        sys.exit(f"crmd needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    sh(BIN / "python", "-m", "pip", "install", "--quiet", "-e", ".[test,postgres]")
    STAMP.write_text(wanted)


def run(args: list[str]) -> None:
    crmd = BIN / "crmd"
    env = dict(os.environ, CRMD_LOG_LEVEL=os.environ.get("CRMD_LOG_LEVEL", "info"))
    if not (ROOT / "store" / "crmd.db").exists():
        sh(crmd, "--site", ROOT, "demo", env=env)
    sh(crmd, "--site", ROOT, "run", "--interval", "10", *args, env=env)


def test(args: list[str]) -> None:
    sh(BIN / "ruff", "check", ".")
    sh(BIN / "mypy")
    sh(BIN / "lint-imports")
    sh(BIN / "python", "-m", "pytest", *args)


def main() -> None:
    commands = {"run": run, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    ensure_venv()
    try:
        commands[sys.argv[1]](sys.argv[2:])
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
