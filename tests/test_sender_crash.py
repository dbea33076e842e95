"""Kill -9 the sender between Twilio's acceptance and the local mark: one message, reconciled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from channel_site import T0, ChannelSite, sms_yaml
from fakes import FakeTwilio

pytestmark = pytest.mark.slow

SENDER = "from crmd.cli.commands import main; main()"


def run_sender(site: Path, env: dict[str, str], now: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SENDER, "--site", str(site), "--now", now, "outbox", "send"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_sender_killed_after_twilio_accepted_sends_nothing_twice(
    tmp_path: Path, fake_twilio: FakeTwilio, provider_env: dict[str, str]
) -> None:
    channels = {"sms": sms_yaml(fake_twilio.url, timeout_seconds="60")}
    site = ChannelSite(tmp_path / "site", channels, provider_env)
    mid = site.queue("张三您好,您的爱车保养已完成。")
    fake_twilio.script = ["block"]  # accept, then hold the answer back

    first = run_sender(site.root, provider_env, T0.isoformat())
    try:
        accepted = fake_twilio.accepted.wait(60)
        alive = first.poll() is None  # accepted at Twilio, not yet marked here
    finally:
        first.kill()
        _, err = first.communicate(timeout=30)
        fake_twilio.release.set()
    assert accepted, err
    assert alive
    assert first.returncode == -9
    row = site.message(mid)
    assert (row.status, row.attempts, row.provider_ref) == ("sending", 1, None)

    # Restarted at once: the claim is younger than reconcile_after, so nothing happens yet.
    again = run_sender(site.root, provider_env, T0.isoformat())
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert out == "nothing to send\n"
    assert site.message(mid).status == "sending"

    later = run_sender(site.root, provider_env, "2026-11-23T02:01:00+00:00")
    out, err = later.communicate(timeout=60)
    assert later.returncode == 0, err
    assert out == "1 reconciled\n"
    (sent,) = fake_twilio.messages  # the customer got exactly one message
    assert sent["to"] == "+8613800138000"
    row = site.message(mid)
    assert (row.status, row.provider_ref) == ("sent", sent["sid"])
    posts = [r for r in fake_twilio.requests if r.startswith("POST ")]
    assert len(posts) == 1
