"""What importing the store costs: Alembic (and the Mako and Pygments it brings, about 50 ms)
loads only when a store is migrated, not when crmd.store.database is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MIGRATION_LIBRARIES = ("alembic", "mako")


def loaded_after(code: str, cwd: Path) -> list[str]:
    """The migration libraries in sys.modules after a fresh interpreter runs `code`."""
    report = (
        "import json, sys\n"
        f"print(json.dumps([m for m in {MIGRATION_LIBRARIES!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", f"{code}\n{report}"],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=True,
    )
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


@pytest.mark.timeout(120)
def test_importing_the_store_does_not_load_alembic(tmp_path: Path) -> None:
    assert loaded_after("import crmd.store.database", tmp_path) == []


@pytest.mark.timeout(120)
def test_migrating_a_store_loads_alembic(tmp_path: Path) -> None:
    """The check above means something: migrating does import Alembic, inside Store.migrate."""
    code = (
        "from crmd.store.database import Store\n"
        f"Store.open('sqlite:///{tmp_path / 'crmd.db'}').dispose()"
    )
    assert loaded_after(code, tmp_path) == list(MIGRATION_LIBRARIES)


@pytest.mark.timeout(120)
def test_opening_a_store_at_the_newest_revision_loads_no_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crmd.db'}"
    code = f"from crmd.store.database import Store\nStore.open({url!r}).dispose()"
    assert loaded_after(code, tmp_path) == list(MIGRATION_LIBRARIES)  # a new store: migrated
    assert loaded_after(code, tmp_path) == []  # at the head now: read, not migrated


@pytest.mark.timeout(120)
def test_a_store_behind_the_head_is_still_migrated(tmp_path: Path) -> None:
    from crmd.store.database import HEAD_REVISION, Store

    store = Store(f"sqlite:///{tmp_path / 'crmd.db'}")
    try:
        store.migrate("0006")
        assert store.revision() == "0006"
        store.migrate()
        assert store.revision() == HEAD_REVISION
    finally:
        store.dispose()


def test_head_revision_is_alembics_head() -> None:
    from crmd.store.database import HEAD_REVISION, Store

    store = Store("sqlite://")
    try:
        assert store.head_revision() == HEAD_REVISION
    finally:
        store.dispose()
