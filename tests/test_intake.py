"""Recording customers and events: updates keep what a record does not mention."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from crmd.intake.records import upsert_customers
from crmd.store.database import Store, StoreError
from crmd.store.tables import customers

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def test_update_without_birthday_or_attributes_keeps_them(
    tmp_path: Path, store_url: str | None
) -> None:
    store = Store.open(store_url or f"sqlite:///{tmp_path}/crmd.db")
    with store.write() as conn:
        upsert_customers(
            conn,
            [
                {
                    "id": "C1",
                    "name": "张三",
                    "birthday": date(1990, 2, 28),
                    "attributes": {"level": "A"},
                }
            ],
            NOW,
        )
    with store.write() as conn:
        result = upsert_customers(
            conn, [{"id": "C1", "name": "张三丰", "attributes": {"source": "展厅"}}], NOW
        )
    assert (result.changed, result.added) == (1, 0)
    with store.read() as conn:
        row = conn.execute(select(customers)).one()
    assert row.name == "张三丰"
    assert row.birthday == date(1990, 2, 28)
    assert row.birthday_md == 228
    assert row.attributes == {"level": "A", "source": "展厅"}
    store.dispose()


def test_a_locked_store_is_a_plain_error(tmp_path: Path) -> None:
    Store.open(f"sqlite:///{tmp_path}/crmd.db").dispose()
    other = sqlite3.connect(tmp_path / "crmd.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    store = Store(f"sqlite:///{tmp_path}/crmd.db", busy_timeout_ms=100)
    try:
        with pytest.raises(StoreError, match="database is locked"), store.write() as conn:
            upsert_customers(conn, [{"id": "C2", "name": "李四"}], NOW)
    finally:
        other.execute("ROLLBACK")
        other.close()
    with store.write() as conn:  # once the other writer is gone, writing works again
        upsert_customers(conn, [{"id": "C2", "name": "李四"}], NOW)
