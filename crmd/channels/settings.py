"""Channel settings: `channels/NAME.yaml` files, checked whole like rule files.

The file name is the channel's name, the one rules use (`sms:` actions go to channel `sms`);
`type:` picks the channel type that delivers it (default: the name). Keys every channel has:
quiet hours, a rate limit, the retry policy; the type adds its own keys. Secrets never go
in these files (crmd/channels/secrets.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

from jsonschema import Draft202012Validator

from crmd.channels.base import BaseChannel, ChannelSettings, QuietHours, RateLimit, RetryPolicy
from crmd.channels.registry import channel_type
from crmd.channels.secrets import missing_text, read_secret
from crmd.errors import ConfigError, RuleError, RuleSetError
from crmd.rules.schema import schema_problems
from crmd.rules.yamlpos import YamlSource, read_yaml
from crmd.site import Site

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CLOCK = {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$", "description": "HH:MM"}
PERIODS = {
    "second": timedelta(seconds=1),
    "minute": timedelta(minutes=1),
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
}
# Keys that would hold a secret: refused with a pointer to where secrets belong.
SECRET_KEYS = {"password", "auth_token", "token", "account_sid", "sid", "secret", "api_key"}

COMMON_OPTIONS: dict[str, Any] = {
    "type": {"type": "string", "description": "the name of an installed channel type"},
    "quiet_hours": {
        "type": ["object", "boolean"],
        "properties": {"from": _CLOCK, "to": _CLOCK},
        "required": ["from", "to"],
        "additionalProperties": False,
    },
    "rate_limit": {
        "type": "object",
        "properties": {
            "count": {"type": "integer", "minimum": 1},
            "per": {"enum": list(PERIODS)},
        },
        "required": ["count", "per"],
        "additionalProperties": False,
    },
    "retry": {
        "type": "object",
        "properties": {
            "attempts": {"type": "integer", "minimum": 1, "maximum": 100},
            "first_delay_seconds": {"type": "integer", "minimum": 1},
            "max_delay_seconds": {"type": "integer", "minimum": 1},
        },
        "additionalProperties": False,
    },
    "reconcile_after_seconds": {"type": "integer", "minimum": 1},
}


@dataclass(frozen=True)
class ChannelSet:
    """Every configured channel, with its type, its secrets, and why it is not ready."""

    settings: Mapping[str, ChannelSettings] = field(default_factory=dict)
    types: Mapping[str, type[BaseChannel]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    not_ready: Mapping[str, str] = field(default_factory=dict)

    def all_secrets(self) -> list[str]:
        return [v for values in self.secrets.values() for v in values.values()]


def load_channels(site: Site, env: Mapping[str, str] | None = None) -> ChannelSet:
    """Read every `channels/*.yaml` of the site; RuleSetError lists every problem."""
    env = os.environ if env is None else env
    directory = site.channels_dir
    if not directory.is_dir():
        return ChannelSet()
    errors: list[RuleError] = []
    settings: dict[str, ChannelSettings] = {}
    types: dict[str, type[BaseChannel]] = {}
    for path in sorted(directory.glob("*.yaml"), key=lambda p: p.name):
        source = read_yaml(path, f"channels/{path.name}", errors)
        if source.failed:
            continue
        loaded = _load_one(source, path.stem, site, errors)
        if loaded is not None:
            settings[loaded[0].name], types[loaded[0].name] = loaded
    if errors:
        errors.sort(key=lambda e: (e.file or "", e.line or 0, e.col or 0))
        raise RuleSetError(errors)
    secrets: dict[str, dict[str, str]] = {}
    not_ready: dict[str, str] = {}
    for name, kind in types.items():
        found: dict[str, str] = {}
        missing: list[str] = []
        for spec in kind.secret_specs(settings[name].options):
            value = read_secret(spec, env)
            if value is not None:
                found[spec.key] = value
            elif spec.required:
                missing.append(missing_text(spec))
        secrets[name] = found
        if missing:
            not_ready[name] = "; ".join(missing)
    return ChannelSet(settings, types, secrets, not_ready)


def _load_one(
    source: YamlSource, name: str, site: Site, errors: list[RuleError]
) -> tuple[ChannelSettings, type[BaseChannel]] | None:
    for _path, (line, col), message in source.duplicates:
        errors.append(RuleError(message, source.name, line, col))
    if not _NAME.fullmatch(name):
        errors.append(
            RuleError(
                f"'{name}' is not a channel name: use lower-case letters, digits and _",
                source.name,
            )
        )
        return None
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        errors.append(source.error("a channel file must be a mapping of settings", ()))
        return None
    for key in data:
        if key.lower() in SECRET_KEYS:
            errors.append(
                source.error(
                    f"'{key}' looks like a secret, and secrets never go in channel files: "
                    f"remove it and give it through an environment variable or a systemd "
                    f"credential (see docs/channels.md)",
                    (key,),
                    at_key=True,
                )
            )
    type_name = data.get("type", name)
    if not isinstance(type_name, str):
        errors.append(source.error("type must be the name of a channel type", ("type",)))
        return None
    try:
        kind = channel_type(type_name)
    except ConfigError as exc:
        errors.append(source.error(str(exc), ("type",) if "type" in data else ()))
        return None
    schema = {
        "type": "object",
        "properties": {**COMMON_OPTIONS, **kind.options},
        "required": list(kind.required_options),
        "additionalProperties": False,
    }
    before = len(errors)
    for problem in schema_problems(data, Draft202012Validator(schema)):
        if problem.path and problem.path[0] in SECRET_KEYS:
            continue  # already explained above
        errors.append(source.error(problem.message, problem.path, at_key=problem.at_key))
    if len(errors) > before:
        return None
    if data.get("quiet_hours") is True:
        errors.append(
            source.error(
                "quiet_hours must be {from: 'HH:MM', to: 'HH:MM'}, or false for none",
                ("quiet_hours",),
            )
        )
    for key, message in kind.option_problems(data, site):
        errors.append(source.error(message, (key,) if key in data else ()))
    if len(errors) > before:
        return None
    retry = data.get("retry", {})
    default_retry = RetryPolicy()
    quiet = data.get("quiet_hours")
    limit = data.get("rate_limit")
    common = set(COMMON_OPTIONS)
    return (
        ChannelSettings(
            name=name,
            type=type_name,
            file=source.name,
            quiet_hours=(
                kind.default_quiet_hours
                if quiet is None
                else None
                if quiet is False
                else QuietHours(time.fromisoformat(quiet["from"]), time.fromisoformat(quiet["to"]))
            ),
            rate_limit=RateLimit(limit["count"], PERIODS[limit["per"]]) if limit else None,
            retry=RetryPolicy(
                attempts=retry.get("attempts", default_retry.attempts),
                first_delay=_seconds(retry.get("first_delay_seconds"), default_retry.first_delay),
                max_delay=_seconds(retry.get("max_delay_seconds"), default_retry.max_delay),
            ),
            reconcile_after=_seconds(
                data.get("reconcile_after_seconds"), ChannelSettings.reconcile_after
            ),
            options={k: v for k, v in data.items() if k not in common},
        ),
        kind,
    )


def _seconds(value: int | None, default: timedelta) -> timedelta:
    return default if value is None else timedelta(seconds=value)
