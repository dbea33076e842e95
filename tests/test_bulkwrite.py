"""Bulk writes (crmd.store.bulkwrite): stored exactly as SQLAlchemy's own insert stores them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from crmd.store import ledger
from crmd.store.bulkwrite import allocate_ids, insert_many
from crmd.store.database import StoreError
from crmd.store.tables import dates, events, fires
from crmd.testing import Harness

MakeSite = Callable[[str], Harness]
NOW = datetime(2026, 11, 23, 2, 0, 0, 123456, tzinfo=UTC)


def _event(event_id: str, at: datetime) -> dict[str, object]:
    return {
        "id": event_id,
        "type": "sale.delivered",
        "at": at,
        "customer_id": "C1",
        "vehicle_id": None,
        "task_id": None,
        "data": {"名": "张三", "km": 12000, "none": None},
        "recorded_at": NOW,
    }


def test_bulk_rows_are_stored_as_sqlalchemy_stores_them(make_site: MakeSite) -> None:
    h = make_site("rules: []\n")
    # A zone east of UTC and one west: both become the same UTC instant in the store.
    at = datetime(2026, 11, 2, 15, 0, 0, 5, tzinfo=timezone(timedelta(hours=8)))
    west = at.astimezone(timezone(timedelta(hours=-5)))
    with h.store.write() as conn:
        conn.execute(insert(events), [_event("by-sqlalchemy", at)])
        insert_many(conn, events, [_event("bulk", west), _event("bulk-utc", at.astimezone(UTC))])
        conn.execute(
            insert(dates),
            [{"scope": "vehicle", "subject_id": "V1", "field": "a", "value": date(2027, 1, 2),
              "customer_id": "C1", "set_at": NOW, "set_by": "k"}],
        )  # fmt: skip
        insert_many(
            conn,
            dates,
            [{"scope": "vehicle", "subject_id": "V1", "field": "b", "value": date(2027, 1, 2),
              "customer_id": "C1", "set_at": NOW, "set_by": "k"}],
        )  # fmt: skip
    raw = "SELECT id, type, at, data, recorded_at FROM events ORDER BY seq"
    raw_dates = "SELECT field, value, set_at FROM dates ORDER BY field"
    with h.store.read() as conn:
        plain, bulk, bulk_utc = conn.exec_driver_sql(raw).all()
        date_a, date_b = conn.exec_driver_sql(raw_dates).all()
        typed = list(conn.execute(select(events).order_by(events.c.seq)))
    # The very same stored values, compared as the driver returns them (text on SQLite).
    assert (plain.type, plain.at, plain.recorded_at) == (bulk.type, bulk.at, bulk.recorded_at)
    assert (bulk_utc.at, bulk_utc.recorded_at) == (plain.at, plain.recorded_at)
    assert (date_a.value, date_a.set_at) == (date_b.value, date_b.set_at)
    assert typed[0].data == typed[1].data == {"名": "张三", "km": 12000, "none": None}
    assert typed[0].at == typed[1].at == typed[2].at == at
    assert typed[1].recorded_at == NOW


def test_equal_local_times_an_hour_apart_are_stored_apart(make_site: MakeSite) -> None:
    # 01:30 twice on the night New York's clocks go back: equal as local times (fold aside)
    # but an hour apart; a batch converting each distinct time once must keep both.
    h = make_site("rules: []\n")
    zone = ZoneInfo("America/New_York")
    first = datetime(2026, 11, 1, 1, 30, tzinfo=zone)
    second = first.replace(fold=1)
    assert first == second
    assert second.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    with h.store.write() as conn:
        insert_many(conn, events, [_event("e1", first), _event("e2", second), _event("e3", first)])
    with h.store.read() as conn:
        stored = conn.execute(select(events.c.at).order_by(events.c.seq)).scalars().all()
    assert stored == [first.astimezone(UTC), second.astimezone(UTC), first.astimezone(UTC)]


def test_a_naive_datetime_is_refused(make_site: MakeSite) -> None:
    h = make_site("rules: []\n")
    with pytest.raises(ValueError, match="naive datetime"), h.store.write() as conn:
        insert_many(conn, events, [_event("naive", datetime(2026, 11, 2, 15, 0))])  # noqa: DTZ001


def _fire(key: str) -> dict[str, object]:
    return {
        "key": key, "rule_id": "r", "subject": "site", "customer_id": None,
        "vehicle_id": None, "event_seq": None, "fire_at": NOW, "recorded_at": NOW,
        "status": "fired", "late": False, "detail": {},
    }  # fmt: skip


def test_allocated_ids_follow_the_ones_taken_and_precede_the_next(make_site: MakeSite) -> None:
    h = make_site("rules: []\n")
    with h.store.write() as conn:
        (first,) = conn.execute(insert(fires).returning(fires.c.id), [_fire("a")]).scalars()
        ids = ledger.insert_fires(conn, [_fire("b"), _fire("c"), _fire("d")])
        assert ids == sorted(set(ids))
        assert len(ids) == 3
        assert ids[0] > first
        (after,) = conn.execute(insert(fires).returning(fires.c.id), [_fire("e")]).scalars()
        assert after > ids[-1]
        assert allocate_ids(conn, fires, 0) == []
    with h.store.read() as conn:
        stored = {row.key: row.id for row in conn.execute(select(fires.c.key, fires.c.id))}
    assert [stored[k] for k in "bcd"] == ids


def test_a_fire_key_already_in_the_ledger_is_refused(make_site: MakeSite) -> None:
    """The ledger's unique key stays the guard against a fire done twice, on every path."""
    h = make_site("rules: []\n")
    with h.store.write() as conn:
        ledger.insert_fires(conn, [_fire("once")])
    with pytest.raises(IntegrityError), h.store.write() as conn:
        ledger.insert_fires(conn, [_fire("other"), _fire("once")])
    with h.store.read() as conn:
        assert [row.key for row in conn.execute(select(fires.c.key))] == ["once"]


def test_a_value_too_wide_is_a_store_error(make_site: MakeSite, store_backend: str) -> None:
    h = make_site("rules: []\n")
    wide = "x" * 65
    if store_backend == "sqlite":  # SQLite does not check widths: stored as given
        with h.store.write() as conn:
            insert_many(conn, events, [_event(wide, NOW)])
        with h.store.read() as conn:
            assert conn.execute(select(events.c.id)).scalar_one() == wide
        return
    with pytest.raises(StoreError, match="shorten the value"), h.store.write() as conn:
        insert_many(conn, events, [_event(wide, NOW)])


def test_times_in_json_are_stored_as_utc_text_by_every_way_of_writing(
    make_site: MakeSite,
) -> None:
    # A fire's actions hold aware times: both the bulk path and SQLAlchemy's own insert
    # (the store's engine serialises JSON the same way) store them as ISO text in UTC, and
    # the two local 01:30s of New York's night of the clock change stay an hour apart.
    h = make_site("rules: []\n")
    zone = ZoneInfo("America/New_York")
    first = datetime(2026, 11, 1, 1, 30, tzinfo=zone)
    second = first.replace(fold=1)
    detail = {"actions": [{"at": first}, {"at": second}, {"at": first}], "reason": ""}
    with h.store.write() as conn:
        ledger.insert_fires(conn, [dict(_fire("bulk"), detail=detail)])
        conn.execute(insert(fires), [dict(_fire("plain"), detail=detail)])
    with h.store.read() as conn:
        stored = dict(conn.execute(select(fires.c.key, fires.c.detail)).all())
    expected = [
        {"at": "2026-11-01T05:30:00+00:00"},
        {"at": "2026-11-01T06:30:00+00:00"},
        {"at": "2026-11-01T05:30:00+00:00"},
    ]
    assert stored["bulk"]["actions"] == stored["plain"]["actions"] == expected


@pytest.mark.parametrize(
    "value",
    [datetime(2026, 11, 2, 15, 0), {1, 2}],  # noqa: DTZ001
    ids=["naive time", "set"],
)
def test_a_value_json_cannot_hold_is_refused(make_site: MakeSite, value: object) -> None:
    h = make_site("rules: []\n")
    with pytest.raises(TypeError, match="cannot be stored as JSON"), h.store.write() as conn:
        ledger.insert_fires(conn, [dict(_fire("bad"), detail={"actions": [{"value": value}]})])


def test_lookups_by_many_keys_span_their_chunks(make_site: MakeSite) -> None:
    # More keys than one chunk holds on either backend (500 on SQLite, 10,000 on PostgreSQL):
    # every stored key is found once, and no key that is not stored.
    h = make_site("rules: []\n")
    stored = [f"k{i:05d}" for i in range(10_050)]
    with h.store.write() as conn:
        ledger.insert_fires(conn, [_fire(key) for key in stored])
    asked = stored[::3] + [f"missing{i}" for i in range(600)] + stored[-5:]
    with h.store.read() as conn:
        found = ledger.existing_fire_keys(conn, asked)
    assert found == set(stored[::3]) | set(stored[-5:])
