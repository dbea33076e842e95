"""The store: migrations (on SQLite and PostgreSQL), SQLite settings, UTC times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, select, text

from crmd.intake.records import upsert_customers
from crmd.store.database import MIGRATIONS, Store, StoreError
from crmd.store.tables import customers, events, metadata, outbox

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def revisions() -> list[str]:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    return [r.revision for r in reversed(list(script.walk_revisions()))]


@pytest.fixture
def empty_url(tmp_path: Path, store_backend: str, request: pytest.FixtureRequest) -> str:
    """The URL of a store with no schema at all: a new SQLite file or PostgreSQL database."""
    if store_backend == "sqlite":
        return f"sqlite:///{tmp_path}/crmd.db"
    url: str = request.getfixturevalue("pg_database")
    return url


def test_models_and_migrations_agree(empty_url: str) -> None:
    store = Store.open(empty_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []
    assert store.revision() == store.head_revision()
    store.dispose()


@pytest.mark.parametrize("start", revisions())
def test_an_older_store_upgrades_in_place_keeping_rows(empty_url: str, start: str) -> None:
    url = empty_url
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
    store.dispose()


def test_sqlite_runs_in_wal_mode_with_a_64_mb_page_cache(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/crmd.db")
    with store.read() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
        assert conn.execute(text("PRAGMA cache_size")).scalar_one() == -65536
        # Checkpoints every 10,000 pages (SQLite's default is 1,000), WAL trimmed to 8 MB.
        assert conn.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == 10_000
        assert conn.execute(text("PRAGMA journal_size_limit")).scalar_one() == 8 * 1024 * 1024
    store.dispose()


def test_times_are_stored_in_utc_and_naive_ones_refused(
    tmp_path: Path, store_url: str | None
) -> None:
    store = Store.open(store_url or f"sqlite:///{tmp_path}/crmd.db")
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
    store.dispose()


def test_a_value_too_wide_for_postgresql_is_a_plain_error(
    tmp_path: Path, store_url: str | None
) -> None:
    store = Store.open(store_url or f"sqlite:///{tmp_path}/crmd.db")
    record = {"id": "C" * 65, "name": "张三"}
    if store.is_sqlite:  # SQLite does not check widths; the importer does, for both
        with store.write() as conn:
            upsert_customers(conn, [record], NOW)
    else:
        wanted = r"too long.*nothing from this operation was saved"
        with pytest.raises(StoreError, match=wanted), store.write() as conn:
            upsert_customers(conn, [record], NOW)
        with store.read() as conn:
            assert conn.execute(select(customers.c.id)).all() == []
    store.dispose()


def test_every_migration_downgrades_keeping_rows_and_upgrades_again(empty_url: str) -> None:
    store = Store.open(empty_url)
    row = {
        "fire_id": 1,
        "rule_id": "birthday-sms",
        "channel": "sms",
        "customer_id": "C1",
        "recipient": "+8613800138000",
        "body": "生日快乐",
        "not_before": NOW,
        "next_attempt_at": NOW,
        "created_at": NOW,
    }
    with store.write() as conn:
        upsert_customers(conn, [{"id": "C1", "name": "张三"}], NOW)
        conn.execute(
            insert(outbox),
            [{**row, "status": "dead"}, {**row, "fire_id": 2, "status": "sending"}],
        )
    *older, head = revisions()
    assert head == store.head_revision()
    for revision in reversed(older):
        with store.engine.begin() as conn:
            command.downgrade(store._alembic_config(conn), revision)
        assert store.revision() == revision
        with store.read() as conn:
            assert conn.execute(select(customers.c.name)).scalars().all() == ["张三"]
            statuses = conn.execute(text("SELECT status FROM outbox ORDER BY id")).scalars()
            # 0003 brought `dead` and `sending`; below it they are `failed` and `held`.
            expected = ["dead", "sending"] if revision >= "0003" else ["failed", "held"]
            assert list(statuses) == expected
    store.migrate()  # and back up again: the rows are as they were, the schema matches
    with store.read() as conn:
        assert conn.execute(select(outbox.c.status).order_by(outbox.c.id)).scalars().all() == [
            "dead",
            "held",  # `sending` could not survive the round trip: held, for review
        ]
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []
    store.dispose()


def test_events_are_indexed_by_vehicle_and_task_only_where_they_have_one(
    empty_url: str,
) -> None:
    """Both the migrated store and the model say so, and lookups still use the indexes."""
    store = Store.open(empty_url)
    with store.read() as conn:
        if store.is_sqlite:
            found = dict(
                conn.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE tbl_name = 'events'")
                ).all()
            )
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    text(
                        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE vehicle_id IN ('V1', 'V2')"
                        " AND type IN ('service.done') AND at > '2026' AND at <= '2027'"
                    )
                )
            )
            assert "ix_events_vehicle_id_type_at" in plan
        else:
            found = dict(
                conn.execute(
                    text(
                        "SELECT indexname, indexdef FROM pg_indexes"
                        " WHERE tablename = 'events' AND schemaname = current_schema()"
                    )
                ).all()
            )
    store.dispose()
    for name, column in (
        ("ix_events_vehicle_id_type_at", "vehicle_id"),
        ("ix_events_task_id", "task_id"),
    ):
        assert f"{column} IS NOT NULL" in found[name], found[name]
    # The customer index keeps every event (each customer's history is read whole).
    assert "WHERE" not in found["ix_events_customer_id_type_at"]
    for index in events.indexes:
        where = index.dialect_options["sqlite"]["where"]
        assert (where is not None) == (
            index.name in ("ix_events_vehicle_id_type_at", "ix_events_task_id")
        )
