"""The outbox sender with the real twilio client against a fake Twilio on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from channel_site import T0, ChannelSite, sms_yaml
from fakes import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

from crmd.channels.sms import retry_after

MakeSite = Callable[..., ChannelSite]


@pytest.fixture
def make(tmp_path: Path, fake_twilio: FakeTwilio, provider_env: dict[str, str]) -> MakeSite:
    def build(env: dict[str, str] | None = None, **extra: str) -> ChannelSite:
        channels = {"sms": sms_yaml(fake_twilio.url, **extra)}
        return ChannelSite(tmp_path / "site", channels, provider_env if env is None else env)

    return build


def test_sends_one_sms_through_twilio(make: MakeSite, fake_twilio: FakeTwilio) -> None:
    site = make()
    mid = site.queue("张三您好,感谢您选择我们!", recipient="138 0013 8000")
    report = site.send()
    assert report.sent == 1
    (sent,) = fake_twilio.messages
    assert (sent["to"], sent["from"], sent["body"]) == (
        "+8613800138000",
        "+15005550006",
        "张三您好,感谢您选择我们!",
    )
    row = site.message(mid)
    assert (row.status, row.provider_ref, row.attempts, row.sent_at) == ("sent", sent["sid"], 1, T0)
    assert site.send(seconds=3600).sent == 0  # never twice
    assert len(fake_twilio.messages) == 1


def test_a_message_waits_for_its_time(make: MakeSite, fake_twilio: FakeTwilio) -> None:
    site = make()
    site.queue("later", at=T0 + timedelta(hours=1))
    assert site.send(seconds=3599).sent == 0
    assert site.send(seconds=3600).sent == 1


def test_an_invalid_number_at_twilio_is_a_dead_letter_with_the_reason(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    fake_twilio.script = ["invalid"]
    mid = site.queue("hello")
    assert site.send().dead == 1
    row = site.message(mid)
    assert row.status == "dead"
    assert "21211" in row.last_error
    assert "not a valid phone number" in row.last_error
    assert site.send(seconds=86400).sent == 0
    assert fake_twilio.messages == []


def test_a_number_that_is_not_a_phone_is_dead_before_twilio_is_asked(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    mid = site.queue("hello", recipient="010-1234")
    assert site.send().dead == 1
    assert "invalid phone number" in site.message(mid).last_error
    assert fake_twilio.requests == []


def test_429_retries_after_a_jittered_backoff(make: MakeSite, fake_twilio: FakeTwilio) -> None:
    site = make()
    fake_twilio.script = ["429"]
    mid = site.queue("hello")
    assert site.send().retrying == 1
    row = site.message(mid)
    assert row.status == "queued"
    assert "20429" in row.last_error
    wait = row.next_attempt_at - T0
    assert timedelta(seconds=30) <= wait <= timedelta(seconds=60)  # 60 s, jittered by 0.5-1
    assert site.sender.run_once(row.next_attempt_at - timedelta(seconds=1)).sent == 0
    assert site.sender.run_once(row.next_attempt_at).sent == 1
    assert len(fake_twilio.messages) == 1
    assert site.message(mid).attempts == 2


def test_429_waits_as_long_as_twilio_says_in_retry_after(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    fake_twilio.script = ["429"]
    fake_twilio.retry_after = "300"  # longer than our own first backoff (at most 60 s)
    mid = site.queue("hello")
    assert site.send().retrying == 1
    assert site.message(mid).next_attempt_at == T0 + timedelta(seconds=300)
    assert site.sender.run_once(T0 + timedelta(seconds=299)).sent == 0
    assert site.sender.run_once(T0 + timedelta(seconds=300)).sent == 1
    assert len(fake_twilio.messages) == 1


def test_a_retry_after_longer_than_the_longest_backoff_is_capped(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    fake_twilio.script = ["429"]
    fake_twilio.retry_after = str(24 * 3600)
    mid = site.queue("hello")
    site.send()
    # The channel's retry cap (max_delay_seconds: 600 in this site) bounds the wait.
    assert site.message(mid).next_attempt_at == T0 + timedelta(seconds=600)


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("120", timedelta(seconds=120)),
        (" 0 ", timedelta(0)),
        ("Mon, 23 Nov 2026 10:05:00 GMT", timedelta(minutes=5)),
        ("Mon, 23 Nov 2026 09:00:00 GMT", timedelta(0)),  # already past: no extra wait
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_dates(header: str | None, wait: timedelta | None) -> None:
    assert retry_after(header, datetime(2026, 11, 23, 10, 0, tzinfo=UTC)) == wait


def test_backoff_doubles_and_gives_up_after_the_last_attempt(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    fake_twilio.script = ["500", "500", "500"]
    mid = site.queue("hello")
    site.send()
    first = site.message(mid).next_attempt_at
    site.sender.run_once(first)
    second = site.message(mid).next_attempt_at
    assert timedelta(seconds=60) <= second - first <= timedelta(seconds=120)
    assert site.sender.run_once(second).dead == 1
    row = site.message(mid)
    assert row.status == "dead"
    assert row.last_error.startswith("gave up after 3 attempts")
    assert fake_twilio.messages == []


def test_an_unreachable_twilio_is_retried(tmp_path: Path, provider_env: dict[str, str]) -> None:
    site = ChannelSite(tmp_path / "site", {"sms": sms_yaml("http://127.0.0.1:9")}, provider_env)
    mid = site.queue("hello")
    assert site.send().retrying == 1
    row = site.message(mid)
    assert row.status == "queued"
    assert "cannot reach Twilio" in row.last_error
    assert ACCOUNT_SID not in row.last_error  # the request URL holds the SID


@pytest.mark.parametrize("behaviour", ["accept_then_drop", "slow"])
def test_no_answer_after_twilio_accepted_is_reconciled_not_resent(
    make: MakeSite, fake_twilio: FakeTwilio, behaviour: str
) -> None:
    site = make()
    fake_twilio.script = [behaviour]
    mid = site.queue("hello")
    assert site.send().unknown == 1
    assert site.message(mid).status == "sending"
    assert site.send(seconds=59).reconciled == 0  # before reconcile_after: maybe still going
    assert site.message(mid).status == "sending"
    assert site.send(seconds=60).reconciled == 1
    row = site.message(mid)
    (sent,) = fake_twilio.messages
    assert (row.status, row.provider_ref) == ("sent", sent["sid"])
    assert "not sent again" in row.last_error
    assert any(r.startswith("GET ") for r in fake_twilio.requests)


def test_a_drop_before_twilio_accepted_is_sent_again_once(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    fake_twilio.script = ["drop"]
    mid = site.queue("hello")
    assert site.send().unknown == 1
    report = site.send(seconds=60)
    assert (report.reconciled, report.sent) == (0, 1)
    assert len(fake_twilio.messages) == 1
    assert site.message(mid).status == "sent"


def test_quiet_hours_hold_customer_texts_until_the_morning(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make(quiet_hours='{from: "21:00", to: "08:30"}')
    evening = T0 + timedelta(hours=12)  # 22:00 in Shanghai
    customer = site.queue("good night?", at=evening)
    staff = site.queue("report due", at=evening, to_customer=False)
    report = site.sender.run_once(evening)
    assert (report.deferred, report.sent) == (1, 1)
    assert site.message(staff).status == "sent"
    morning = T0 + timedelta(hours=22, minutes=30)  # 08:30 next day in Shanghai
    assert site.message(customer).next_attempt_at == morning
    assert site.sender.run_once(morning - timedelta(minutes=1)).sent == 0
    assert site.sender.run_once(morning).sent == 1
    assert [m["body"] for m in fake_twilio.messages] == ["report due", "good night?"]


def test_sms_has_quiet_hours_by_default(make: MakeSite, fake_twilio: FakeTwilio) -> None:
    site = make()
    night = T0 + timedelta(hours=13)  # 23:00 in Shanghai
    site.queue("hello", at=night)
    assert site.sender.run_once(night).deferred == 1
    assert site.sender.run_once(T0 + timedelta(hours=21, minutes=59)).sent == 0  # 07:59
    assert site.sender.run_once(T0 + timedelta(hours=22)).sent == 1  # 08:00


def test_a_customer_who_opted_out_after_queueing_gets_nothing(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    mid = site.queue("hello")
    site.customer("C1", name="张三", phone="13800138000", opt_out=True)
    assert site.send().cancelled == 1
    row = site.message(mid)
    assert row.status == "cancelled"
    assert "opted out" in row.last_error
    assert fake_twilio.requests == []


def test_the_rate_limit_spreads_a_burst(make: MakeSite, fake_twilio: FakeTwilio) -> None:
    site = make(rate_limit="{count: 2, per: minute}")
    for n in range(5):
        site.queue(f"hello {n}", recipient=f"1380013800{n}")
    assert site.send().sent == 2
    assert site.send(seconds=59).sent == 0
    assert site.send(seconds=60).sent == 2
    assert site.send(seconds=120).sent == 1
    assert len(fake_twilio.messages) == 5


def test_missing_secrets_hold_the_message_and_say_what_to_set(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make(env={})
    mid = site.queue("hello")
    assert site.send().held == 1
    row = site.message(mid)
    assert row.status == "held"
    assert "CRMD_TWILIO_ACCOUNT_SID" in row.last_error
    assert "CRMD_TWILIO_AUTH_TOKEN" in row.last_error
    assert fake_twilio.requests == []


def test_refused_credentials_hold_the_message_and_never_show_the_secrets(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    wrong = "wrong-" + AUTH_TOKEN
    site = make(env={"CRMD_TWILIO_ACCOUNT_SID": ACCOUNT_SID, "CRMD_TWILIO_AUTH_TOKEN": wrong})
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    crmd_logger = logging.getLogger("crmd")
    crmd_logger.addHandler(handler)
    crmd_logger.setLevel(logging.DEBUG)
    try:
        mid = site.queue("hello")
        assert site.send().held == 1
    finally:
        crmd_logger.removeHandler(handler)
        crmd_logger.setLevel(logging.NOTSET)
    row = site.message(mid)
    assert row.status == "held"
    assert "20003" in row.last_error
    assert "auth token" in row.last_error
    logged = "\n".join(r.getMessage() for r in records)
    assert "13800138000" not in logged  # numbers are masked in logs
    for text in (row.last_error, logged):
        assert ACCOUNT_SID not in text
        assert AUTH_TOKEN not in text


def test_a_rule_fired_again_and_again_sends_one_message(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    site.tick(T0 - timedelta(hours=2))  # the rule starts here (it ignores older history)
    site.event("sale.delivered", "2026-11-23 09:00", customer="C1", event_id="E1")
    for minute in range(3):
        site.tick(T0 + timedelta(minutes=minute))
        site.send(seconds=60 * minute)
    site.event("sale.delivered", "2026-11-23 09:00", customer="C1", event_id="E1")
    site.tick(T0 + timedelta(minutes=5))
    site.send(seconds=300)
    assert [m["body"] for m in fake_twilio.messages] == ["张三您好,感谢您选择我们!"]
    (row,) = site.outbox()
    assert row.status == "sent"


def test_reconciling_does_not_take_another_message_with_the_same_text(
    make: MakeSite, fake_twilio: FakeTwilio
) -> None:
    site = make()
    first = site.queue("生日快乐!")
    assert site.send().sent == 1
    fake_twilio.script = ["drop"]  # the second never reaches Twilio
    second = site.queue("生日快乐!", at=T0 + timedelta(minutes=1))
    assert site.send(seconds=60).unknown == 1
    report = site.send(seconds=120)
    assert (report.reconciled, report.sent) == (0, 1)
    assert len(fake_twilio.messages) == 2
    refs = {site.message(first).provider_ref, site.message(second).provider_ref}
    assert refs == {m["sid"] for m in fake_twilio.messages}
