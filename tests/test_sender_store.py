"""The outbox on real stores: an older store's messages upgrade in place and are sent, on
SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from channel_site import T0, ChannelSite, sms_yaml
from fakes import FakeTwilio
from sqlalchemy import event as sa_event
from sqlalchemy import select, text, update

from crmd.channels.sender import Sender
from crmd.site import load_site
from crmd.store.database import Store
from crmd.store.sharing import lock_channel_for_transaction
from crmd.store.tables import outbox


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/old.db"
    return str(request.getfixturevalue("pg_database"))


def test_messages_queued_by_the_older_version_upgrade_and_go_out(
    store_url: str, tmp_path: Path
) -> None:
    store = Store(store_url)
    store.migrate("0002")
    with store.engine.begin() as conn:
        for fire_id, status, customer in ((1, "queued", "C1"), (2, "failed", None)):
            conn.execute(
                text(
                    "INSERT INTO outbox (fire_id, rule_id, channel, customer_id, recipient, "
                    "subject, body, status, not_before, attempts, created_at) VALUES "
                    "(:fire_id, 'r', 'sms', :customer, '13800138000', '', '你好', :status, "
                    ":at, 0, :at)"
                ),
                {
                    "fire_id": fire_id,
                    "status": status,
                    "customer": customer,
                    "at": T0.replace(tzinfo=None),
                },
            )
    store.migrate()
    assert store.revision() == store.head_revision()
    with store.read() as conn:
        rows = list(conn.execute(select(outbox).order_by(outbox.c.id)))
    assert [(r.status, r.next_attempt_at, r.to_customer) for r in rows] == [
        ("queued", T0, True),
        ("dead", T0, False),
    ]
    site_dir = tmp_path / "site"
    (site_dir / "channels").mkdir(parents=True)
    (site_dir / "channels" / "sms.yaml").write_text("type: log\n", encoding="utf-8")
    sender = Sender.for_site(load_site(site_dir), store, {})
    assert sender.run_once(T0).sent == 1
    store.dispose()


@pytest.mark.postgres
def test_the_sender_on_postgresql(
    tmp_path: Path, pg_database: str, fake_twilio: FakeTwilio, provider_env: dict[str, str]
) -> None:
    site = ChannelSite(tmp_path / "site", {"sms": sms_yaml(fake_twilio.url)}, provider_env)
    site.store = Store.open(pg_database)
    site.sender = site.new_sender()
    site.customer("C1", name="张三", phone="13800138000")
    fake_twilio.script = ["accept_then_drop"]
    first = site.queue("你好")
    second = site.queue("再见", recipient="13900139000")
    report = site.send()
    assert (report.unknown, report.sent) == (1, 1)
    assert site.send(seconds=60).reconciled == 1
    assert {site.message(first).status, site.message(second).status} == {"sent"}
    assert len(fake_twilio.messages) == 2
    assert site.send(seconds=120 + timedelta(hours=1).total_seconds()).sent == 0
    site.store.dispose()


@pytest.mark.postgres
def test_senders_of_several_daemons_take_turns_at_a_rate_limit(
    tmp_path: Path, pg_database: str, fake_twilio: FakeTwilio, provider_env: dict[str, str]
) -> None:
    channels = {"sms": sms_yaml(fake_twilio.url, rate_limit="{count: 1, per: hour}")}
    site = ChannelSite(tmp_path / "site", channels, provider_env, store_url=pg_database)
    first, second = site.queue("一"), site.queue("二")
    other = Store(pg_database)  # another daemon's sender, between its count and its commit
    sending = threading.Thread(target=site.send)
    with other.write() as conn:
        lock_channel_for_transaction(conn, "sms")
        conn.execute(
            update(outbox)
            .where(outbox.c.id == first)
            .values(status="sending", claimed_at=T0, claim_token="other", attempts=1)
        )
        sending.start()
        sending.join(timeout=1)
        assert sending.is_alive()  # it waits to count until the other claim is committed
    sending.join(timeout=60)
    assert not sending.is_alive()
    # The other daemon's claim used the one message an hour: this sender sent nothing.
    assert fake_twilio.messages == []
    assert site.message(second).status == "queued"
    other.dispose()
    site.store.dispose()


@pytest.mark.sqlite_only
def test_a_durable_write_is_synced_at_commit_and_others_are_not(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/crmd.db")

    def level(durable: bool) -> int:
        with store.write(durable=durable) as conn:
            return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())

    # FULL (2) syncs the WAL at each commit; NORMAL (1) at checkpoints. One pooled
    # connection switches back and forth, before each BEGIN.
    assert [level(d) for d in (False, True, False, True)] == [1, 2, 1, 2]
    store.dispose()


@pytest.mark.sqlite_only
def test_the_sender_claims_a_message_durably_before_sending_it(
    tmp_path: Path, provider_env: dict[str, str]
) -> None:
    site = ChannelSite(tmp_path / "site", {"sms": "type: log\n"}, provider_env)
    mid = site.queue("生日快乐")
    seen: list[tuple[str, int]] = []

    @sa_event.listens_for(site.store.engine, "before_cursor_execute")
    def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("UPDATE outbox"):
            raw = conn.connection.dbapi_connection
            seen.append((statement, raw.execute("PRAGMA synchronous").fetchone()[0]))

    assert site.send().sent == 1
    assert site.message(mid).status == "sent"
    # First the claim ("sending"), synced to disk before the channel is called; then the
    # mark, which a power cut may undo: the claim then has it reconciled, not sent again.
    assert [level for _, level in seen] == [2, 1]
    site.store.dispose()
