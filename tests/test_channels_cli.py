"""`crmd outbox`, `crmd run` sending through a fake Twilio, and a dry run that sends nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from channel_site import sms_yaml
from click.testing import CliRunner, Result
from fakes import FakeTwilio

from crmd.cli.commands import main

REPO = Path(__file__).resolve().parent.parent
NOW = "2026-11-23T10:00"


@pytest.fixture
def site(tmp_path: Path, fake_twilio: FakeTwilio) -> Path:
    """The shipped site with its sms channel pointed at the fake Twilio server."""
    root = tmp_path / "site"
    shutil.copytree(REPO / "rules", root / "rules")
    (root / "channels").mkdir()
    (root / "channels" / "sms.yaml").write_text(sms_yaml(fake_twilio.url), encoding="utf-8")
    shutil.copy(REPO / "site.yaml", root / "site.yaml")
    return root


def crmd(site: Path, env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(
        main, ["--site", str(site), "--now", NOW, *args], env=env, catch_exceptions=False
    )


def listed(site: Path, env: dict[str, str], *args: str) -> list[dict[str, object]]:
    result = crmd(site, env, "outbox", "--json", *args)
    assert result.exit_code == 0, result.output
    messages: list[dict[str, object]] = json.loads(result.stdout)
    return messages


def test_the_daemon_sends_and_a_dry_run_sends_nothing(
    site: Path, fake_twilio: FakeTwilio, provider_env: dict[str, str]
) -> None:
    assert crmd(site, provider_env, "demo").exit_code == 0
    dry = crmd(site, provider_env, "run", "--once", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert fake_twilio.requests == []
    assert listed(site, provider_env) == []
    result = crmd(site, provider_env, "run", "--once")
    assert result.exit_code == 0, result.output
    sent = listed(site, provider_env, "--status", "sent")
    assert sent  # the demo has a birthday today
    assert {m["body"] for m in sent} == {m["body"] for m in fake_twilio.messages}
    assert len(fake_twilio.messages) == len(sent)
    table = crmd(site, provider_env, "outbox")
    assert "sent" in table.stdout


def test_retry_and_cancel_one_message(site: Path, provider_env: dict[str, str]) -> None:
    assert crmd(site, provider_env, "demo").exit_code == 0
    no_secrets = dict.fromkeys((*provider_env, "CREDENTIALS_DIRECTORY"), "")
    assert crmd(site, no_secrets, "run", "--once").exit_code == 0  # no secrets: held
    held = listed(site, no_secrets, "--status", "held")
    assert held
    first = str(held[0]["id"])
    assert "CRMD_TWILIO_AUTH_TOKEN" in str(held[0]["last_error"])
    assert crmd(site, provider_env, "outbox", "cancel", first).exit_code == 0
    (row,) = [m for m in listed(site, provider_env) if str(m["id"]) == first]
    assert row["status"] == "cancelled"
    assert crmd(site, provider_env, "outbox", "send").stdout == "nothing to send\n"
    result = crmd(site, provider_env, "outbox", "retry", first)
    assert result.stdout == f"message {first}: queued\n"
    sent = crmd(site, provider_env, "outbox", "send")
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.startswith("1 sent")
    refused = CliRunner().invoke(main, ["--site", str(site), "outbox", "retry", first])
    assert refused.exit_code == 1
    assert "already sent; retrying would send it twice" in refused.stderr
    refused = CliRunner().invoke(main, ["--site", str(site), "outbox", "cancel", first])
    assert refused.exit_code == 1
    missing = CliRunner().invoke(main, ["--site", str(site), "outbox", "cancel", "999"])
    assert missing.exit_code == 1
    assert "no message 999" in missing.stderr


def test_outbox_of_an_empty_store(site: Path) -> None:
    assert crmd(site, {}, "outbox").stdout == "no messages\n"
    bad = CliRunner().invoke(main, ["--site", str(site), "outbox", "--status", "lost"])
    assert bad.exit_code == 2
