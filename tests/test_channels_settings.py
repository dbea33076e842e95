"""Channel files, secrets and the channel registry: checked like rules, plugins by entry point."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from channel_site import ChannelSite
from click.testing import CliRunner, Result

from crmd.channels.registry import available, channel_type
from crmd.channels.settings import load_channels
from crmd.cli.commands import main
from crmd.errors import ConfigError, RuleSetError
from crmd.site import load_site

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the shipped site: rules, channels and settings."""
    root = tmp_path / "site"
    for name in ("rules", "channels"):
        shutil.copytree(REPO / name, root / name)
    shutil.copy(REPO / "site.yaml", root / "site.yaml")
    return root


NO_SECRETS = {
    "CRMD_TWILIO_ACCOUNT_SID": "",
    "CRMD_TWILIO_AUTH_TOKEN": "",
    "CRMD_SMTP_PASSWORD": "",
    "CREDENTIALS_DIRECTORY": "",
}


def check(site: Path, env: dict[str, str] | None = None) -> Result:
    """`crmd check` with no secrets but those in `env`, whatever this machine has set, on a
    day far from the working calendar's end (so it warns of channels only)."""
    return CliRunner().invoke(
        main,
        ["--site", str(site), "--now", "2026-06-01T09:00", "check"],
        env={**NO_SECRETS, **(env or {})},
    )


def errors_of(site: Path, name: str, text: str) -> list[str]:
    (site / "channels" / name).write_text(text, encoding="utf-8")
    with pytest.raises(RuleSetError) as caught:
        load_channels(load_site(site), {})
    return [str(e) for e in caught.value.errors]


def test_the_shipped_channels_check_and_say_which_secrets_are_missing(site: Path) -> None:
    result = check(site)
    assert result.exit_code == 0, result.output
    assert "channels/sms.yaml: channel sms (sms), not ready" in result.stdout
    assert "channels/email.yaml: channel email (email), not ready" in result.stdout
    assert "CRMD_TWILIO_AUTH_TOKEN" in result.stderr
    assert "smtp_password" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ok: 49 rules in 3 files, 2 channels"


def test_secrets_from_systemd_credentials_make_channels_ready(site: Path, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name, value in (
        ("twilio_account_sid", "AC123"),
        ("twilio_auth_token", "tok"),
        ("smtp_password", "pw\n"),
    ):
        (credentials / name).write_text(value, encoding="utf-8")
    result = check(site, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert result.exit_code == 0, result.output
    assert "channel sms (sms), ready" in result.stdout
    assert "channel email (email), ready" in result.stdout
    assert result.stderr == ""
    channels = load_channels(load_site(site), {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert channels.secrets["email"] == {"password": "pw"}


def test_an_environment_variable_wins_over_a_credential(site: Path, tmp_path: Path) -> None:
    (tmp_path / "twilio_auth_token").write_text("from-file", encoding="utf-8")
    env = {
        "CREDENTIALS_DIRECTORY": str(tmp_path),
        "CRMD_TWILIO_AUTH_TOKEN": "from-env",
        "CRMD_TWILIO_ACCOUNT_SID": "AC1",
    }
    channels = load_channels(load_site(site), env)
    assert channels.secrets["sms"]["auth_token"] == "from-env"


def test_errors_are_located_and_the_check_exits_1(site: Path) -> None:
    (site / "channels" / "sms.yaml").write_text(
        'type: sms\nfrom: "+15005550006"\nquiet_hours: {from: "21:00", til: "08:00"}\n',
        encoding="utf-8",
    )
    result = check(site)
    assert result.exit_code == 1
    assert "channels/sms.yaml:3:" in result.stderr
    assert "til" in result.stderr


def test_a_secret_in_a_channel_file_is_refused(site: Path) -> None:
    errors = errors_of(site, "sms.yaml", 'from: "+15005550006"\nauth_token: abc123\n')
    assert len(errors) == 1
    assert errors[0].startswith("channels/sms.yaml:2:1: 'auth_token' looks like a secret")
    assert "abc123" not in errors[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("type: pager\n", "channels/x.yaml:1:7: no channel type 'pager' is installed"),
        ("type: sms\nfrom: '010-1234'\n", "channels/x.yaml:2:7: from:"),
        ("type: sms\n", "needs 'from' (a number) or 'messaging_service'"),
        ("type: email\nhost: h\n", "channels/x.yaml:1:1: the file needs 'from'"),
        ("type: task\nrole: janitor\n", "channels/x.yaml:2:7: unknown role 'janitor'"),
        ("type: log\nrate_limit: {count: 0, per: minute}\n", "count must be at least 1"),
        ("type: log\nquiet_hours: {from: '25:00', to: '08:00'}\n", "from must be HH:MM"),
        ("type: log\nquiet_hours: true\n", "or false for none"),
    ],
)
def test_channel_setting_errors(site: Path, text: str, expected: str) -> None:
    errors = errors_of(site, "x.yaml", text)
    assert any(expected in e for e in errors), errors


def test_builtin_types_come_through_the_entry_point_group() -> None:
    assert {"task", "sms", "email", "log"} <= set(available())


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, entry: str) -> Path:
    """A tiny installed distribution `crmd-NAME` declaring one crmd.channels entry point."""
    plugins = tmp_path / "plugins"
    info = plugins / f"crmd_{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: crmd-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[crmd.channels]\n{name} = {entry}\n")
    monkeypatch.syspath_prepend(str(plugins))
    return plugins


def test_a_channel_type_from_an_installed_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins = install(tmp_path, monkeypatch, "fax", "crmd_fax:FaxChannel")
    (plugins / "crmd_fax.py").write_text(
        "from crmd.channels import BaseChannel, Receipt\n"
        "SENT = []\n"
        "class FaxChannel(BaseChannel):\n"
        "    options = {'number': {'type': 'string'}}\n"
        "    def send(self, message):\n"
        "        SENT.append((self.settings.options['number'], message.body))\n"
        "        return Receipt('fax-%d' % message.id)\n"
    )
    monkeypatch.delitem(sys.modules, "crmd_fax", raising=False)
    assert "fax" in available()
    site = ChannelSite(tmp_path / "site", {"fax": "number: '020-1234'\n"}, {})
    mid = site.queue("传真内容", channel="fax", recipient="020-1234")
    assert site.send().sent == 1
    assert sys.modules["crmd_fax"].SENT == [("020-1234", "传真内容")]
    assert site.message(mid).provider_ref == f"fax-{mid}"
    (site.root / "channels" / "fax.yaml").write_text("nubmer: '1'\n")
    with pytest.raises(RuleSetError, match="unknown key 'nubmer'"):
        load_channels(site.site, {})


def test_a_plugin_that_is_not_a_channel_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, "bad", "json:dumps")
    with pytest.raises(ConfigError, match=r"is not a crmd\.channels\.BaseChannel"):
        channel_type("bad")


def test_the_task_channel_gives_staff_the_text_to_send(tmp_path: Path) -> None:
    site = ChannelSite(tmp_path / "site", {"sms": "type: task\nrole: cr_specialist\n"}, {})
    mid = site.queue("张三您好,感谢您选择我们!")
    assert site.send().sent == 1
    (task,) = site.tasks("test-rule")
    assert (task.role, task.customer_id, task.status) == ("cr_specialist", "C1", "open")
    assert task.note == "sms to 13800138000:\n张三您好,感谢您选择我们!"
    assert site.message(mid).provider_ref == f"task:{task.id}"


def test_the_log_channel_sends_to_the_log(tmp_path: Path) -> None:
    site = ChannelSite(tmp_path / "site", {"sms": "type: log\n"}, {})
    mid = site.queue("hello")
    assert site.send().sent == 1
    assert site.message(mid).provider_ref == f"log:{mid}"


def test_a_message_for_a_channel_without_a_file_is_held(tmp_path: Path) -> None:
    site = ChannelSite(tmp_path / "site", {}, {})
    mid = site.queue("hello")
    assert site.send().held == 1
    assert "add channels/sms.yaml" in site.message(mid).last_error
