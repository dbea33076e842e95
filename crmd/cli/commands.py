"""The whole `crmd` command: the main group of crmd.cli.main with the command families that
live in modules of their own (they import crmd.cli.main's App, so it cannot import them)."""

from __future__ import annotations

from crmd.cli.fires import fires
from crmd.cli.main import main

main.add_command(fires)

__all__ = ["main"]
