"""A site: one dealership's directory of rules, channels, settings and store."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from crmd.calendar.workcal import WorkCalendar
from crmd.errors import ConfigError
from crmd.events import BUILTIN_EVENT_TYPES
from crmd.fields import Fields, site_fields

DEFAULT_ROLES: tuple[str, ...] = (
    "cr_manager",
    "sales_callback",
    "service_callback",
    "cr_specialist",
    "market_specialist",
    "member_specialist",
    "sales",
    "sales_manager",
    "service_manager",
    "gm",
)
SETTINGS_FILE = "site.yaml"
SETTINGS_KEYS = {
    "name", "timezone", "store", "store_schema", "roles", "event_types", "customer_fields",
    "vehicle_fields", "calendar",
}  # fmt: skip
CALENDAR_KEYS = {"published_through", "days_off", "working_days"}


@dataclass(frozen=True)
class Site:
    root: Path
    name: str = "crmd"
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    store_url: str = ""
    # The PostgreSQL schema of this site's tables; None: the public schema (crmd.store.siteschema).
    store_schema: str | None = None
    roles: tuple[str, ...] = DEFAULT_ROLES
    event_types: tuple[str, ...] = BUILTIN_EVENT_TYPES
    calendar: WorkCalendar = field(default_factory=WorkCalendar)
    # The fields of each event type, customer and vehicle that rules may name (crmd.fields).
    fields: Fields = field(default_factory=Fields)

    @property
    def rules_dir(self) -> Path:
        return self.root / "rules"

    @property
    def channels_dir(self) -> Path:
        return self.root / "channels"

    @property
    def store_dir(self) -> Path:
        return self.root / "store"


# PostgreSQL keeps 63 bytes of a name; ours are plain lowercase ASCII, so bytes are letters.
MAX_NAME = 63
_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Schemas that exist in every database or that PostgreSQL reserves.
_RESERVED = ("information_schema", "pg_catalog", "pg_toast")


def schema_problem(name: str) -> str | None:
    """What is wrong with a schema name, or None when a site may use it."""
    if not _NAME.fullmatch(name):
        return (
            "a schema name is lowercase letters, digits and underscores, starting with a "
            "letter (e.g. dealer_a)"
        )
    if len(name) > MAX_NAME:
        return f"a schema name has at most {MAX_NAME} characters (this one has {len(name)})"
    if name in _RESERVED or name.startswith("pg_"):
        return "names starting with pg_, and information_schema, belong to PostgreSQL"
    return None


def site_schema(name: str | None) -> str | None:
    """The schema a setting names: None for none or `public` (the store as it always was)."""
    return None if name in (None, "", "public") else name


def _dates(values: Any, where: str) -> list[date]:
    if values is None:
        return []
    if not isinstance(values, list) or not all(isinstance(v, date) for v in values):
        raise ConfigError(f"{where} must be a list of dates like 2027-01-01")
    return list(values)


def _calendar(settings: dict[str, Any], path: Path) -> WorkCalendar:
    """The working calendar with the site's own days (docs/sites.md, *The working calendar*)."""
    through = settings.get("published_through")
    if through is not None and (isinstance(through, bool) or not isinstance(through, int)):
        raise ConfigError(f"{path}: calendar.published_through must be a year like 2027")
    days_off = _dates(settings.get("days_off"), f"{path}: calendar.days_off")
    working = _dates(settings.get("working_days"), f"{path}: calendar.working_days")
    try:
        calendar = WorkCalendar(
            extra_days_off=days_off, extra_working_days=working, published_through=through
        )
    except ValueError as exc:
        raise ConfigError(f"{path}: calendar: {exc}") from None
    # A day of a year the calendar still refuses would be ignored without a word.
    later = sorted(d for d in days_off + working if d.year > calendar.last_published)
    if later:
        year = later[-1].year
        raise ConfigError(
            f"{path}: calendar lists {later[0].isoformat()}, after published_through "
            f"({calendar.last_published}): set published_through: {year} once every day off "
            f"and make-up working day of {year} is listed"
        )
    return calendar


def _store_schema(settings: dict[str, Any], path: Path) -> str | None:
    """The site's schema from $CRMD_STORE_SCHEMA or `store_schema`, its name checked."""
    from_env = os.environ.get("CRMD_STORE_SCHEMA")
    value = from_env or settings.get("store_schema")
    where = "CRMD_STORE_SCHEMA" if from_env else f"{path}: store_schema"
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a schema name like dealer_a")
    problem = schema_problem(value)
    if problem is not None:
        raise ConfigError(f"{where} {value!r} is not a schema name crmd can use: {problem}")
    return site_schema(value)


def site_root(root: Path | str | None = None) -> Path:
    """The site directory: the argument, else $CRMD_SITE, else the current directory."""
    return Path(root or os.environ.get("CRMD_SITE") or ".").resolve()


def open_site(root: Path | str | None = None) -> Site:
    """The site a command works on; a directory without site.yaml is none, and is refused
    before anything is created in it (a store file in whatever directory one happened to be
    in would be a store nobody finds again)."""
    where = site_root(root)
    if where.is_dir() and not (where / SETTINGS_FILE).is_file():
        raise ConfigError(
            f"no crmd site in {where}: it has no {SETTINGS_FILE}. Name a site with --site DIR "
            f"(or CRMD_SITE=DIR), or make this one: create {where / SETTINGS_FILE} (every "
            f"key is optional, e.g. 'name: 甲店'; see docs/sites.md) and put rules in "
            f"{where / 'rules'}/. Nothing was created."
        )
    return load_site(where)


def load_site(root: Path | str | None = None) -> Site:
    """Read `site.yaml` (all keys optional) from a site directory.

    The directory comes from the argument, else $CRMD_SITE, else the current directory.
    $CRMD_STORE_URL overrides the store URL, so secrets in a PostgreSQL URL stay out of files;
    $CRMD_STORE_SCHEMA overrides the store schema.
    """
    root = site_root(root)
    if not root.is_dir():
        raise ConfigError(f"site directory {root} does not exist")
    path = root / SETTINGS_FILE
    settings: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        settings = loaded or {}
    unknown = set(settings) - SETTINGS_KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(SETTINGS_KEYS))}"
        )
    try:
        tz = ZoneInfo(str(settings.get("timezone", "Asia/Shanghai")))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{path}: timezone {settings.get('timezone')!r} is not an IANA zone "
            f"name like Asia/Shanghai"
        ) from None
    cal_settings = settings.get("calendar") or {}
    if not isinstance(cal_settings, dict) or set(cal_settings) - CALENDAR_KEYS:
        raise ConfigError(f"{path}: calendar takes only {', '.join(sorted(CALENDAR_KEYS))}")
    calendar = _calendar(cal_settings, path)
    roles = settings.get("roles", list(DEFAULT_ROLES))
    declared = _event_types(settings.get("event_types", []), path)
    extra_types = list(declared)
    customer_extra = settings.get("customer_fields", [])
    vehicle_extra = settings.get("vehicle_fields", [])
    for key, value in (
        ("roles", roles),
        ("customer_fields", customer_extra),
        ("vehicle_fields", vehicle_extra),
    ):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{path}: {key} must be a list of names")
    for key, names in (("customer_fields", customer_extra), ("vehicle_fields", vehicle_extra)):
        _field_names(names, f"{path}: {key}")
    store_url = os.environ.get("CRMD_STORE_URL") or str(settings.get("store", ""))
    if not store_url:
        store_url = f"sqlite:///{root / 'store' / 'crmd.db'}"
    elif store_url.startswith("sqlite:///") and not store_url.startswith("sqlite:////"):
        # A relative SQLite path is relative to the site, not to the working directory.
        store_url = f"sqlite:///{root / store_url.removeprefix('sqlite:///')}"
    return Site(
        root=root,
        name=str(settings.get("name", root.name)),
        timezone=tz,
        store_url=store_url,
        store_schema=_store_schema(settings, path),
        roles=tuple(roles),
        event_types=BUILTIN_EVENT_TYPES
        + tuple(t for t in extra_types if t not in BUILTIN_EVENT_TYPES),
        calendar=calendar,
        fields=site_fields(declared, customer_extra, vehicle_extra),
    )


def _event_types(value: Any, path: Path) -> dict[str, tuple[list[str], list[str]]]:
    """`event_types`: a list of type names, or a mapping of each type to its `fields` and
    `required` fields (a built-in type named there gains those fields)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return {name: ([], []) for name in value}
    if not isinstance(value, dict):
        raise ConfigError(
            f"{path}: event_types must be a list of names, or a mapping of each type to its "
            f"fields, like {{complaint.escalated: {{fields: [reason], required: [reason]}}}}"
        )
    declared: dict[str, tuple[list[str], list[str]]] = {}
    for name, spec in value.items():
        where = f"{path}: event_types: {name}"
        spec = {} if spec is None else spec
        if not isinstance(spec, dict) or set(spec) - {"fields", "required"}:
            raise ConfigError(f"{where} takes only fields and required, each a list of names")
        lists = [spec.get(key) or [] for key in ("fields", "required")]
        for key, names in zip(("fields", "required"), lists, strict=True):
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{where}: {key} must be a list of names")
            _field_names(names, f"{where}: {key}")
        declared[str(name)] = (lists[0], lists[1])
    return declared


def _field_names(names: list[str], where: str) -> None:
    """A field is named in templates as `event.name`: letters (any script), digits and _."""
    for name in names:
        if not name.isidentifier():
            raise ConfigError(
                f"{where}: {name!r} is not a field name; use letters, digits and _, not "
                f"starting with a digit, like next_visit or 来源"
            )
