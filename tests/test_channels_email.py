"""The e-mail channel with the real yagmail client against a local SMTP server."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from channel_site import T0, ChannelSite, email_yaml
from fakes import FakeSmtp
from sqlalchemy import update

from crmd.store.tables import outbox


@pytest.fixture
def site(tmp_path: Path, smtp_server: FakeSmtp, provider_env: dict[str, str]) -> ChannelSite:
    return ChannelSite(tmp_path / "site", {"email": email_yaml(smtp_server.port)}, provider_env)


def test_sends_chinese_subject_and_body_after_logging_in(
    site: ChannelSite, smtp_server: FakeSmtp
) -> None:
    mid = site.queue(
        "张三您好:\n您的爱车已到保养时间,请预约。",
        channel="email",
        recipient="zhang@example.com",
        subject="保养提醒 — 示例汽车4S店",
    )
    assert site.send().sent == 1
    (mail,) = smtp_server.received
    assert mail["Subject"] == "保养提醒 — 示例汽车4S店"
    assert mail["To"] == "zhang@example.com"
    assert "crm@dealer.example.com" in mail["From"]
    plain = mail.get_body(("plain",))
    assert plain is not None
    assert plain.get_content().strip() == "张三您好:\n您的爱车已到保养时间,请预约。"
    row = site.message(mid)
    assert row.status == "sent"
    assert (
        row.provider_ref == mail["Message-ID"] == f"<crmd.{mid}.{row.fire_id}@dealer.example.com>"
    )


def test_a_body_that_names_a_file_is_sent_as_text_not_attached(
    site: ChannelSite, smtp_server: FakeSmtp, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("do not attach me", encoding="utf-8")
    site.queue(str(secret_file), channel="email", recipient="a@example.com", subject="s")
    assert site.send().sent == 1
    (mail,) = smtp_server.received
    assert "do not attach me" not in mail.as_string()


def test_markup_in_a_body_is_shown_as_written_in_both_parts(
    site: ChannelSite, smtp_server: FakeSmtp
) -> None:
    body = "客户备注: <b>VIP</b> & 老客户\n<script>alert(1)</script>"
    site.queue(body, channel="email", recipient="a@example.com", subject="回访 <紧急>")
    assert site.send().sent == 1
    (mail,) = smtp_server.received
    assert mail["Subject"] == "回访 <紧急>"
    plain, markup = mail.get_body(("plain",)), mail.get_body(("html",))
    assert plain is not None
    assert markup is not None
    assert plain.get_content().strip() == body
    page = markup.get_content()
    assert "<b>" not in page
    assert "<script>" not in page
    assert "客户备注: &lt;b&gt;VIP&lt;/b&gt; &amp; 老客户<br>" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_several_addresses_get_one_message(site: ChannelSite, smtp_server: FakeSmtp) -> None:
    site.queue("周报", channel="email", recipient="a@example.com, b@example.com", subject="周报")
    assert site.send().sent == 1
    assert smtp_server.recorder.envelopes[0].rcpt_tos == ["a@example.com", "b@example.com"]


def test_a_refused_recipient_is_dead_and_a_deferred_one_retries(
    site: ChannelSite, smtp_server: FakeSmtp
) -> None:
    smtp_server.recorder.refuse = {
        "gone@example.com": "550 5.1.1 mailbox unavailable",
        "full@example.com": "452 4.2.2 mailbox full",
    }
    gone = site.queue("x", channel="email", recipient="gone@example.com", subject="s")
    full = site.queue("x", channel="email", recipient="full@example.com", subject="s")
    report = site.send()
    assert (report.dead, report.retrying) == (1, 1)
    assert "550" in site.message(gone).last_error
    assert site.message(full).status == "queued"
    assert smtp_server.received == []


def test_an_invalid_address_is_dead_before_connecting(
    site: ChannelSite, smtp_server: FakeSmtp
) -> None:
    mid = site.queue("x", channel="email", recipient="not-an-address", subject="s")
    assert site.send().dead == 1
    assert "invalid e-mail address" in site.message(mid).last_error


def test_a_wrong_password_holds_the_message_without_showing_it(
    tmp_path: Path, smtp_server: FakeSmtp
) -> None:
    site = ChannelSite(
        tmp_path / "site",
        {"email": email_yaml(smtp_server.port)},
        {"CRMD_SMTP_PASSWORD": "not-the-password"},
    )
    mid = site.queue("x", channel="email", recipient="a@example.com", subject="s")
    assert site.send().held == 1
    row = site.message(mid)
    assert "refused the login" in row.last_error
    assert "not-the-password" not in row.last_error
    assert smtp_server.received == []


def test_a_server_that_is_down_is_retried(tmp_path: Path, provider_env: dict[str, str]) -> None:
    site = ChannelSite(tmp_path / "site", {"email": email_yaml(9)}, provider_env)
    mid = site.queue("x", channel="email", recipient="a@example.com", subject="s")
    assert site.send().retrying == 1
    assert "cannot connect" in site.message(mid).last_error


def test_an_interrupted_e_mail_is_held_for_review_never_resent(
    site: ChannelSite, smtp_server: FakeSmtp
) -> None:
    mid = site.queue("x", channel="email", recipient="a@example.com", subject="s")
    with site.store.write() as conn:  # as a sender killed mid-send leaves it
        conn.execute(
            update(outbox)
            .where(outbox.c.id == mid)
            .values(status="sending", claimed_at=T0, claim_token="dead", attempts=1)
        )
    assert site.send(seconds=60).held == 0  # reconcile_after is 5 minutes by default
    report = site.sender.run_once(T0 + timedelta(minutes=5))
    assert report.held == 1
    row = site.message(mid)
    assert row.status == "held"
    assert f"crmd outbox retry {mid}" in row.last_error
    assert smtp_server.received == []
