"""A claimed message belongs to its sender until the outcome is recorded.

Another daemon's sender reconciles a message left "sending" only once its sender is gone:
never while that sender is still on its way to the provider, however old the claim looks
(reconciled then, the provider has nothing yet, the message is queued again and the
customer gets it twice). And a claim carries the time it was made, not the start of a
long pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from channel_site import T0, ChannelSite, sms_yaml
from fakes import FakeTwilio
from sqlalchemy import create_engine, text

from crmd.channels.base import Message, Receipt
from crmd.channels.sender import Sender
from crmd.store.database import Store
from crmd.store.siteschema import MESSAGES_NAMESPACE

SENDER = "from crmd.cli.commands import main; main()"


@pytest.mark.postgres
def test_a_message_still_being_sent_is_left_to_its_sender_however_old_its_claim(
    tmp_path: Path,
    pg_database: str,
    fake_twilio: FakeTwilio,
    provider_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    channels = {"sms": sms_yaml(fake_twilio.url)}  # reconcile_after: 60 s
    site = ChannelSite(tmp_path / "site", channels, provider_env, store_url=pg_database)
    mid = site.queue("张三您好,您的爱车保养已完成。")
    # The first daemon's sender has claimed the message and is on its way to Twilio.
    channel, _ = site.sender.channel("sms")
    assert channel is not None
    real_send = channel.send
    on_the_way, go_on = threading.Event(), threading.Event()

    def send_when_told(message: Message) -> Receipt:
        on_the_way.set()
        go_on.wait(60)
        return real_send(message)

    monkeypatch.setattr(channel, "send", send_when_told)
    first = threading.Thread(target=site.send)
    first.start()
    other_store = Store(pg_database)
    try:
        assert on_the_way.wait(60)
        assert site.message(mid).status == "sending"
        # Another daemon's pass, with the claim past reconcile_after: Twilio has nothing
        # yet, but the message is not interrupted, so it is left alone.
        other = Sender.for_site(site.site, other_store, site.env)
        report = other.run_once(T0 + timedelta(seconds=61))
        assert (report.reconciled, report.sent) == (0, 0)
        assert site.message(mid).status == "sending"
        assert fake_twilio.messages == []
        other.close()
    finally:
        go_on.set()
        first.join(60)
        other_store.dispose()
    assert not first.is_alive()
    (sent,) = fake_twilio.messages  # the customer got the text once
    row = site.message(mid)
    assert (row.status, row.provider_ref, row.attempts) == ("sent", sent["sid"], 1)
    site.store.dispose()


@pytest.mark.postgres
def test_a_killed_senders_message_is_reconciled_once_not_sent_again(
    tmp_path: Path, pg_database: str, fake_twilio: FakeTwilio, provider_env: dict[str, str]
) -> None:
    channels = {"sms": sms_yaml(fake_twilio.url, timeout_seconds="60")}
    site = ChannelSite(tmp_path / "site", channels, provider_env, store_url=pg_database)
    mid = site.queue("张三您好,您的爱车保养已完成。")
    fake_twilio.script = ["block"]  # accept, then hold the answer back
    env = {**os.environ, **provider_env, "CRMD_STORE_URL": pg_database}
    command = ["--site", str(site.root), "--now", T0.isoformat(), "outbox", "send"]
    first = subprocess.Popen(
        [sys.executable, "-c", SENDER, *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        accepted = fake_twilio.accepted.wait(60)
    finally:
        first.kill()
        _, err = first.communicate(timeout=30)
        fake_twilio.release.set()
    assert accepted, err
    assert site.message(mid).status == "sending"
    _wait_until_no_message_lock(pg_database)  # the server has closed the killed session
    report = site.send(seconds=61)
    assert (report.reconciled, report.sent) == (1, 0)
    (sent,) = fake_twilio.messages
    row = site.message(mid)
    assert (row.status, row.provider_ref) == ("sent", sent["sid"])
    site.store.dispose()


def _wait_until_no_message_lock(url: str) -> None:
    """Until PostgreSQL has freed every message lock; bounded by 30 s."""
    admin = create_engine(url)
    held = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :ns AND granted"
    )
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            with admin.connect() as conn:
                if conn.execute(held, {"ns": MESSAGES_NAMESPACE}).scalar_one() == 0:
                    return
            time.sleep(0.05)
    finally:
        admin.dispose()
    raise AssertionError("the killed sender's message lock was never freed")


def test_a_claim_carries_the_time_it_was_made_not_the_start_of_the_pass(
    tmp_path: Path,
    fake_twilio: FakeTwilio,
    provider_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = ChannelSite(tmp_path / "site", {"sms": sms_yaml(fake_twilio.url)}, provider_env)
    first, second = site.queue("一"), site.queue("二", recipient="13900139000")
    # Each send takes 90 seconds on the pass's clock.
    elapsed = [0.0]
    site.sender.monotonic = lambda: elapsed[0]
    channel, _ = site.sender.channel("sms")
    assert channel is not None
    real_send = channel.send

    def slow_send(message: Message) -> Receipt:
        elapsed[0] += 90
        return real_send(message)

    monkeypatch.setattr(channel, "send", slow_send)
    assert site.send().sent == 2
    assert site.message(first).claimed_at == T0
    assert site.message(second).claimed_at == T0 + timedelta(seconds=90)
    site.store.dispose()
