"""Shared fixtures: a site in a temp dir with a real store, on SQLite and on PostgreSQL.

Every test that touches a store asks for `store_url` (directly or through `make_site`,
`make_shipped`, `make_policy_site`, `site_store`), which runs it once per backend:

- `sqlite`: the site's own SQLite file (the URL is None: the site's default store);
- `postgresql`: a database of this test session on the server at CRMD_TEST_POSTGRES_URL,
  migrated once and emptied (TRUNCATE ... RESTART IDENTITY) before each test: creating and
  dropping a database per test cost about 2 s on this machine, emptying one about 0.12 s.
  Without the variable these variants are deselected, and one line at the end says so.

CRMD_TEST_BACKENDS=sqlite (or postgresql) runs one backend only.

The policy tests (tests/test_policy_*.py) evaluate some 55 shipped rules on every tick and
are the slowest; on PostgreSQL only a sample of them runs, one or more per trigger kind
(marked `postgres_sample`). CRMD_TEST_PG_POLICIES=all runs every one of them there too.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fakes import ACCOUNT_SID, AUTH_TOKEN, FakeSmtp, FakeTwilio
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from crmd.store.database import Store
from crmd.store.tables import metadata
from crmd.testing import FakeSystemd, Harness

REPO = Path(__file__).resolve().parent.parent
BACKENDS = ("sqlite", "postgresql")
NO_POSTGRES = "CRMD_TEST_POSTGRES_URL is not set; PostgreSQL tests skipped"


def _backends() -> list[str]:
    wanted = os.environ.get("CRMD_TEST_BACKENDS", ",".join(BACKENDS))
    chosen = [b.strip() for b in wanted.split(",") if b.strip()]
    unknown = set(chosen) - set(BACKENDS)
    if unknown or not chosen:
        raise pytest.UsageError(
            f"CRMD_TEST_BACKENDS={wanted!r}: write a comma-separated list of {', '.join(BACKENDS)}"
        )
    return chosen


def _admin(server_url: str) -> Engine:
    return create_engine(server_url, isolation_level="AUTOCOMMIT")


def _create_database(server_url: str) -> str:
    """Create an empty database on the server; returns its URL."""
    name = f"crmd_test_{uuid.uuid4().hex[:12]}"
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        # A test database need not survive a power cut: commits skip the wait for the disk.
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(server_url: str, url: str) -> None:
    name = make_url(url).database
    admin = _admin(server_url)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The server URL from CRMD_TEST_POSTGRES_URL; skips the test without it."""
    url = os.environ.get("CRMD_TEST_POSTGRES_URL")
    if not url:
        pytest.skip(NO_POSTGRES)
    return url


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    return postgres_server


@pytest.fixture(scope="session")
def postgres_session_store(postgres_server: str) -> Iterator[str]:
    """One database for this test session, migrated to head once; dropped at the end."""
    url = _create_database(postgres_server)
    try:
        Store.open(url).dispose()
        yield url
    finally:
        _drop_database(postgres_server, url)


@pytest.fixture
def pg_database(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (migration tests), dropped afterwards."""
    url = _create_database(postgres_server)
    try:
        yield url
    finally:
        _drop_database(postgres_server, url)


def _empty(url: str) -> None:
    """Delete every row and restart the id sequences, as in a new store."""
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        # Connections left open by the previous test (a CLI run keeps its pool) go first,
        # so nothing holds a lock the TRUNCATE waits for.
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_backend(request: pytest.FixtureRequest) -> str:
    """The store backend this test runs on (the test runs once per backend)."""
    backend: str = request.param
    return backend


def _left_out(item: pytest.Item) -> str | None:
    """Why this backend variant of a test does not run here, or None if it runs."""
    params = getattr(item, "callspec", None)
    backend = params.params.get("store_backend") if params is not None else None
    if backend is None:
        return None
    if backend not in _backends():
        return f"{backend} variants not run: CRMD_TEST_BACKENDS leaves it out"
    if backend != "postgresql":
        return None
    if item.get_closest_marker("sqlite_only") is not None:
        return "SQLite-only tests (its file, locks and pragmas) not run on PostgreSQL"
    if not os.environ.get("CRMD_TEST_POSTGRES_URL"):
        return f"PostgreSQL variants not run: {NO_POSTGRES.split(';')[0]}"
    if (
        item.path.name.startswith("test_policy_")
        and item.get_closest_marker("postgres_sample") is None
        and os.environ.get("CRMD_TEST_PG_POLICIES") != "all"
    ):
        return "policy tests outside the PostgreSQL sample (CRMD_TEST_PG_POLICIES=all runs them)"
    return None


LEFT_OUT = pytest.StashKey[dict[str, int]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the backend variants that cannot or need not run, counted by reason."""
    keep, dropped, reasons = [], [], {}
    for item in items:
        reason = _left_out(item)
        if reason is None:
            keep.append(item)
        else:
            dropped.append(item)
            reasons[reason] = reasons.get(reason, 0) + 1
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
    config.stash[LEFT_OUT] = reasons


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    for reason, count in config.stash.get(LEFT_OUT, {}).items():
        terminalreporter.write_line(f"{count} tests deselected: {reason}", yellow=True)


@pytest.fixture
def store_url(store_backend: str, request: pytest.FixtureRequest) -> str | None:
    """None on SQLite (the site's own store file), else an emptied PostgreSQL store's URL."""
    if store_backend == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_session_store")
    _empty(url)
    return url


@pytest.fixture
def site_store(store_url: str | None, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Points the CLI at this test's store (CRMD_STORE_URL) when it is not the site's file."""
    monkeypatch.delenv("CRMD_SITE", raising=False)
    if store_url is None:
        monkeypatch.delenv("CRMD_STORE_URL", raising=False)
    else:
        monkeypatch.setenv("CRMD_STORE_URL", store_url)
    return store_url


@pytest.fixture
def harnesses() -> Iterator[list[Harness]]:
    """Harnesses a test made; their store connections are closed after it."""
    made: list[Harness] = []
    yield made
    for h in made:
        h.store.dispose()


@pytest.fixture
def make_site(
    tmp_path: Path, store_url: str | None, harnesses: list[Harness]
) -> Callable[[str], Harness]:
    """Build a site whose only rule file holds the given YAML."""

    def make(rules_yaml: str) -> Harness:
        h = Harness(tmp_path / "site", rules_yaml, store_url=store_url)
        harnesses.append(h)
        return h

    return make


@pytest.fixture
def make_shipped(
    tmp_path: Path, store_url: str | None, harnesses: list[Harness]
) -> Callable[..., Harness]:
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
        h = Harness(root, store_url=store_url)
        harnesses.append(h)
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


@pytest.fixture
def fake_systemd() -> Iterator[Callable[[str], FakeSystemd]]:
    """Makes systemd notify sockets (crmd.testing.FakeSystemd), closed after the test."""
    made: list[FakeSystemd] = []

    def make(address: str) -> FakeSystemd:
        made.append(FakeSystemd(address))
        return made[-1]

    yield make
    for systemd in made:
        systemd.close()
