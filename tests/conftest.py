"""Shared fixtures: a site in a temp dir with a real SQLite store, and a PostgreSQL URL."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakes import ACCOUNT_SID, AUTH_TOKEN, FakeSmtp, FakeTwilio

from crmd.testing import Harness

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[[str], Harness]:
    """Build a site whose only rule file holds the given YAML."""

    def make(rules_yaml: str) -> Harness:
        return Harness(tmp_path / "site", rules_yaml)

    return make


@pytest.fixture
def make_shipped(tmp_path: Path) -> Callable[..., Harness]:
    """Build a site from the repository's own site.yaml and shipped rule files.

    `files` picks the rule files under rules/; `extra` adds a rule file of its own. With a
    `start` time the rules start there (a new rule ignores history) and the site gets
    customer C1 (张三, a member) and vehicle V1, as the policy tests assume.
    """

    def make(
        files: tuple[str, ...] = ("callbacks.yaml", "reminders.yaml", "reports.yaml"),
        extra: str | None = None,
        start: str | None = None,
    ) -> Harness:
        root = tmp_path / "site"
        (root / "rules").mkdir(parents=True)
        for name in files:
            shutil.copy(REPO / "rules" / name, root / "rules" / name)
        shutil.copy(REPO / "site.yaml", root / "site.yaml")
        if extra is not None:
            (root / "rules" / "alternative.yaml").write_text(extra, encoding="utf-8")
        h = Harness(root)
        if start is not None:
            h.tick(start)
            h.customer("C1", name="张三", phone="13800138000", member=True)
            h.vehicle("V1", "C1", plate="粤A12345", model="朗逸")
        return h

    return make


@pytest.fixture
def make_policy_site(make_shipped: Callable[..., Harness]) -> Callable[..., Harness]:
    """The shipped P1-P19 rule files (reports.yaml has its own tests) with customer C1 and
    vehicle V1, every rule started at `start`; `extra` adds a rule file."""

    def make(extra: str | None = None, start: str = "2026-01-01 00:00") -> Harness:
        return make_shipped(("callbacks.yaml", "reminders.yaml"), extra, start)

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


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    """A fake Twilio REST endpoint on 127.0.0.1 (see tests/fakes.py)."""
    server = FakeTwilio(now=lambda: datetime(2026, 11, 23, 2, 0, tzinfo=UTC))
    yield server
    server.stop()


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtp]:
    """An SMTP server on 127.0.0.1 that records what arrives."""
    server = FakeSmtp()
    yield server
    server.stop()


@pytest.fixture
def provider_env(fake_twilio: FakeTwilio) -> dict[str, str]:
    """The secrets the fakes accept, as the environment would give them."""
    return {
        "CRMD_TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "CRMD_TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "CRMD_SMTP_PASSWORD": FakeSmtp.password,
    }
