"""The store: migrations, SQLite settings, UTC times, and the same engine on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select, text

from crmd.store import MIGRATIONS, Store
from crmd.tables import customers, events, metadata
from crmd.testing import Harness

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def revisions() -> list[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/crmd.db")
    with store.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []
    assert store.revision() == store.head_revision()


@pytest.mark.parametrize("start", revisions())
def test_an_older_store_upgrades_in_place_keeping_rows(tmp_path: Path, start: str) -> None:
    url = f"sqlite:///{tmp_path}/crmd.db"
    old = Store(url)
    old.migrate(start)
    with old.write() as conn:
        conn.execute(
            insert(customers).values(
                id="C1",
                name="张三",
                phone="138",
                email="",
                member=True,
                opt_out=False,
                attributes={},
                created_at=NOW,
                updated_at=NOW,
            )
        )
    old.dispose()
    store = Store.open(url)
    assert store.revision() == store.head_revision()
    with store.read() as conn:
        assert conn.execute(select(customers.c.name)).scalars().all() == ["张三"]


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/crmd.db")
    with store.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"


def test_times_are_stored_in_utc_and_naive_ones_refused(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/crmd.db")
    beijing = timezone(timedelta(hours=8))
    with store.write() as conn:
        conn.execute(
            insert(events).values(
                id="E1",
                type="sale.delivered",
                at=datetime(2026, 11, 23, 9, 0, tzinfo=beijing),
                data={},
                recorded_at=NOW,
            )
        )
    with store.read() as conn:
        raw = conn.execute(text("SELECT at FROM events")).scalar_one()
        assert str(raw).startswith("2026-11-23 01:00:00")
        assert conn.execute(select(events.c.at)).scalar_one() == datetime(
            2026, 11, 23, 1, 0, tzinfo=UTC
        )
    with pytest.raises(Exception, match="naive datetime"), store.write() as conn:
        conn.execute(
            insert(events).values(
                id="E2",
                type="x",
                at=datetime(2026, 11, 23),  # noqa: DTZ001 - the point of the test
                data={},
                recorded_at=NOW,
            )
        )


@pytest.mark.postgres
def test_engine_on_postgresql(tmp_path: Path, pg_database: str) -> None:
    h = Harness(
        tmp_path / "site",
        """
rules:
  - id: sales-callback
    when: {event: sale.delivered, after: 3 days, at: "09:00"}
    do:
      - task: {role: sales_callback, title: "回访 {{ customer.name }}", due: 2 days}
""",
        store_url=pg_database,
    )
    assert h.store.revision() == h.store.head_revision()
    h.tick("2026-11-01 08:00")
    h.customer("C1", name="张三")
    h.event("sale.delivered", "2026-11-02 15:00", "C1")
    assert h.tick("2026-11-05 08:59").fires == []
    assert [f.status for f in h.tick("2026-11-05 09:00").fires] == ["fired"]
    assert h.tick("2026-11-05 09:00").fires == []
    (task,) = h.tasks()
    assert task.title == "回访 张三"
    assert task.due_at == h.local("2026-11-07 09:00")
    h.store.dispose()
