"""Shared fixtures: a site in a temp dir with a real SQLite store, and a PostgreSQL URL."""

from __future__ import annotations

import os
from collections.abc import Callable
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
