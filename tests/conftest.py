"""Shared fixtures: a site in a temp dir with a real SQLite store, and a PostgreSQL URL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crmd.testing import Harness

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[[str], Harness]:
    """Build a site whose only rule file holds the given YAML."""

    def make(rules_yaml: str) -> Harness:
        return Harness(tmp_path / "site", rules_yaml)

    return make


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("CRMD_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CRMD_TEST_POSTGRES_URL is not set; PostgreSQL tests skipped")
    return url


@pytest.fixture
def pg_database(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards; yields its URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"crmd_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
