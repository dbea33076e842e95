"""The rule file schema (JSON Schema 2020-12) and its errors put into plain words.

The schema checks shape only: which keys exist and what type each value has. Meaning (known
event types and roles, offsets, schedules, templates) is checked by `crmd.rules.compile_rule`.

Conventions the error translation relies on:
- each branch of a `oneOf` over mappings names its distinguishing key first in `required`;
- `description` says what a value must be, in words that finish "... must be ".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from crmd.calendar.schedule_spec import SCHEDULE_KEYS
from crmd.rules.yamlpos import JsonPath


def _mapping(properties: dict[str, Any], *required: str, **extra: Any) -> dict[str, Any]:
    """A mapping with exactly these keys; unknown keys are errors."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


TEXT: dict[str, Any] = {"type": "string"}
DURATION: dict[str, Any] = {
    "type": "string",
    "description": "a duration like '3 days', '2 hours' or '3 working days'",
}
TIME_OF_DAY: dict[str, Any] = {
    # Unquoted 9:30 reaches us as the integer 570 (YAML 1.1 base 60); crmd accepts it.
    "type": ["string", "integer"],
    "description": 'a time of day like "09:30"',
}
# One event type or a list of them (`items` and `minItems` only apply to lists).
EVENT_TYPES: dict[str, Any] = {"type": ["string", "array"], "items": TEXT, "minItems": 1}
RULE_ID: dict[str, Any] = {
    "type": "string",
    "pattern": "^[a-z0-9][a-z0-9-]*$",
    "description": "lowercase letters, digits and '-', starting with a letter or digit",
}

EVENT_TRIGGER = _mapping(
    {
        "event": EVENT_TYPES,
        "after": DURATION,
        "at": TIME_OF_DAY,
        "count": {"type": "integer", "minimum": 1},
        "per": {"enum": ["customer", "vehicle", "task"]},
        "for_each": {"enum": ["customer"]},
    },
    "event",
)
# Schedule specs go to crmd.calendar.schedule_spec.schedule_from_spec, which reads and checks the
# values; which keys go with each form comes from its table. The order here is the order
# messages list the forms in.
DAY_OF_MONTH: dict[str, Any] = {"type": ["integer", "string", "array"]}
_SCHEDULE_FORM_VALUES: dict[str, dict[str, Any]] = {
    "daily": TIME_OF_DAY,
    "weekly": {"type": ["string", "array"]},
    "monthly": DAY_OF_MONTH,
    "quarterly": DAY_OF_MONTH,
    "cron": TEXT,
    "holiday": TEXT,
}
_SCHEDULE_OPTION_VALUES: dict[str, dict[str, Any]] = {
    "at": TIME_OF_DAY,
    "days": TEXT,
    "shift": TEXT,
}
FOR_EACH: dict[str, Any] = {"enum": ["customer"]}
SCHEDULE_TRIGGERS = [
    _mapping(
        {
            form: value,
            **{key: _SCHEDULE_OPTION_VALUES[key] for key in SCHEDULE_KEYS[form][1:]},
            "for_each": FOR_EACH,
        },
        form,
    )
    for form, value in _SCHEDULE_FORM_VALUES.items()
]
ANNUAL_TRIGGER = _mapping(
    {"annually": TEXT, "at": TIME_OF_DAY, "feb29": {"enum": ["feb28", "mar1"]}}, "annually"
)
DATE_TRIGGER = _mapping(
    {"date": TEXT, "before": DURATION, "after": DURATION, "at": TIME_OF_DAY}, "date"
)

DUE: dict[str, Any] = {
    "type": ["string", "object"],
    "description": "a duration like '2 days', or a mapping like {day: 10, at: \"17:00\"}",
    "properties": {
        "after": DURATION,
        "at": TIME_OF_DAY,
        "day": {
            "anyOf": [{"type": "integer", "minimum": 1, "maximum": 31}, {"const": "last"}],
            "description": "a day of the month, 1 to 31, or last",
        },
        "shift": TEXT,
    },
    "additionalProperties": False,
}
ROLE: dict[str, Any] = {
    # A role, or a role picked by a field's value: {by: event.department, sales: ..., default: ...}
    "type": ["string", "object"],
    "description": "a role, or a mapping like {by: event.department, sales: sales_callback, "
    "default: service_callback}",
    "properties": {"by": TEXT, "default": TEXT},
    "additionalProperties": TEXT,
    "required": ["by", "default"],
}
TASK = _mapping({"role": ROLE, "title": TEXT, "note": TEXT, "due": DUE}, "role", "title")
SMS = _mapping({"text": TEXT}, "text")
EMAIL_TO: dict[str, Any] = {
    # `pattern` only applies to text, `items` and `minItems` only to lists.
    "type": ["string", "array"],
    "pattern": "^customer$",
    "items": {
        "type": "string",
        "pattern": r"^[^@\s]+@[^@\s]+$",
        "description": "an e-mail address like boss@example.com",
    },
    "minItems": 1,
    "description": "customer, or a list of e-mail addresses like [boss@example.com]",
}
EMAIL = _mapping({"subject": TEXT, "body": TEXT, "to": EMAIL_TO}, "subject", "body")
CANCEL = _mapping(
    {"rules": {"type": "array", "items": TEXT, "minItems": 1}, "matching": TEXT}, "rules"
)
SET = _mapping(
    {"field": TEXT, "after": DURATION, "km": {"type": "integer", "minimum": 1}}, "field", "after"
)
EMIT = _mapping({"event": TEXT, "data": {"type": "object", "additionalProperties": TEXT}}, "event")
# Each action is a mapping with a single key naming its kind.
ACTIONS = [
    _mapping({"task": TASK}, "task"),
    _mapping({"sms": SMS}, "sms"),
    _mapping({"email": EMAIL}, "email"),
    _mapping({"cancel": CANCEL}, "cancel"),
    _mapping({"complete": CANCEL}, "complete"),
    _mapping({"set": SET}, "set"),
    _mapping({"emit": EMIT}, "emit"),
]

RULE = _mapping(
    {
        "id": RULE_ID,
        "description": TEXT,
        "enabled": {"type": "boolean"},
        "when": {
            "oneOf": [EVENT_TRIGGER, *SCHEDULE_TRIGGERS, ANNUAL_TRIGGER, DATE_TRIGGER],
            "description": "a trigger mapping like {event: sale.delivered}",
        },
        # Fields and operators are checked by crmd.rules.compile_rule, located at each key.
        "where": {"type": "object"},
        "unless": {
            # A list of event types, or {events: [...], same: vehicle}.
            "type": ["array", "object"],
            "items": TEXT,
            "minItems": 1,
            "properties": {
                "events": {"type": "array", "items": TEXT, "minItems": 1},
                "same": {"enum": ["customer", "vehicle"]},
            },
            "required": ["events"],
            "additionalProperties": False,
        },
        "backfill": {
            "type": "string",
            "description": "a duration like '30 days', or all",
        },
        "late": _mapping({"skip_after": DURATION}, "skip_after"),
        "do": {
            "type": "array",
            "items": {"oneOf": ACTIONS, "description": "a mapping like {sms: {text: ...}}"},
            "minItems": 1,
        },
    },
    "id",
    "when",
    "do",
    description="a mapping with id, when and do",
)

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://crmd.example/rule-file.schema.json",
    "title": "crmd rule file",
    # An empty `rules:` (null) is a file with no rules, like `rules: []`.
    **_mapping(
        {"rules": {"type": ["array", "null"], "items": RULE}},
        description="a mapping with a 'rules:' list",
    ),
}

_VALIDATOR = Draft202012Validator(SCHEMA)
_TYPE_WORDS = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "empty",
}


@dataclass(frozen=True)
class SchemaProblem:
    """One schema error in plain words, at a JSON path (at the key itself when `at_key`)."""

    path: JsonPath
    message: str
    at_key: bool = False


def schema_problems(
    document: Any, validator: Draft202012Validator = _VALIDATOR
) -> list[SchemaProblem]:
    """Check a loaded file against the rule schema (or another); every problem, in plain words."""
    problems: list[SchemaProblem] = []
    for error in validator.iter_errors(document):
        problems.extend(_explain(error))
    return problems


def name_of(path: JsonPath) -> str:
    """How a message names the value at `path`: 'when', 'task.title', 'action', 'rule'."""
    if not path:
        return "the file"
    if path[0] == "rules" and len(path) >= 2:
        path = path[2:]
        if not path:
            return "rule"
    last = path[-1]
    if isinstance(last, int):
        parent = path[-2] if len(path) >= 2 else "list"
        return "action" if parent == "do" else f"each item of {parent}"
    keys = [p for p in path if isinstance(p, str)]
    if len(keys) >= 2 and not (path[-2] == keys[-2] == "do"):
        return f"{keys[-2]}.{last}"
    return last


def owner_of(path: JsonPath) -> str:
    """How a message names the mapping at `path` as the owner of keys: 'when', 'task'."""
    if not path:
        return "the file"
    if len(path) == 2 and path[0] == "rules":
        return "rule"
    last = path[-1]
    return "action" if isinstance(last, int) and path[-2] == "do" else str(last)


def did_you_mean(word: object, choices: Sequence[str]) -> str:
    """'; did you mean 'x'?' when a close choice exists, else ''."""
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.7)
    return f"; did you mean '{close[0]}'?" if close else ""


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _explain(error: ValidationError) -> Iterator[SchemaProblem]:
    path: JsonPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    instance = error.instance
    kind = error.validator
    what = schema.get("description")
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        for key in instance:
            if key not in allowed:
                yield SchemaProblem(
                    (*path, key),
                    f"unknown key '{key}' in {owner_of(path)}; expected one of: "
                    f"{', '.join(allowed)}{did_you_mean(key, allowed)}",
                    at_key=True,
                )
    elif kind == "required":
        for key in schema["required"]:
            if key not in instance:
                yield SchemaProblem(path, f"{owner_of(path)} needs '{key}'")
    elif kind == "oneOf" and isinstance(instance, Mapping) and _discriminated(error):
        yield from _explain_forms(error, path)
    elif what and kind in ("type", "pattern", "oneOf", "anyOf", "const"):
        yield SchemaProblem(path, f"{name_of(path)} must be {what}; got {_shown(instance)}")
    elif kind == "type":
        types = error.validator_value
        types = [types] if isinstance(types, str) else types
        words = " or ".join(_TYPE_WORDS.get(t, t) for t in types)
        yield SchemaProblem(path, f"{name_of(path)} must be {words}; got {_shown(instance)}")
    elif kind == "enum":
        choices = [str(c) for c in error.validator_value]
        yield SchemaProblem(
            path,
            f"{name_of(path)} must be one of: {', '.join(choices)}; got {_shown(instance)}"
            + did_you_mean(instance, choices),
        )
    elif kind == "minimum":
        yield SchemaProblem(path, f"{name_of(path)} must be at least {error.validator_value}")
    elif kind == "maximum":
        yield SchemaProblem(path, f"{name_of(path)} must be at most {error.validator_value}")
    elif kind == "minItems":
        yield SchemaProblem(path, f"{name_of(path)} needs at least one item")
    else:  # pragma: no cover - every keyword the schema uses is handled above
        yield SchemaProblem(path, f"{name_of(path)}: {error.message}")


def _form_keys(error: ValidationError) -> list[str]:
    return [branch["required"][0] for branch in error.validator_value]


def _discriminated(error: ValidationError) -> bool:
    return all(
        isinstance(b, Mapping) and b.get("type") == "object" and b.get("required")
        for b in error.validator_value
    )


def _explain_forms(error: ValidationError, path: JsonPath) -> Iterator[SchemaProblem]:
    """A `oneOf` over mappings told apart by one key: `when` forms, action kinds."""
    forms = _form_keys(error)
    instance = error.instance
    present = [i for i, key in enumerate(forms) if key in instance]
    owner = owner_of(path)
    needs = f"{owner} needs exactly one of: {', '.join(forms)}"
    if len(present) == 1:
        # The form is clear: report what is wrong inside it.
        for sub in error.context or []:
            if sub.relative_schema_path[0] == present[0]:
                yield from _explain(sub)
        return
    if len(present) > 1:
        found = ", ".join(forms[i] for i in present)
        hint = "; put each action in its own '-' item" if owner == "action" else ""
        yield SchemaProblem(path, f"{needs}; found {found}{hint}")
        return
    known = {key for branch in error.validator_value for key in branch["properties"]}
    unknown = [key for key in instance if key not in known]
    for key in unknown:
        yield SchemaProblem(
            (*path, key),
            f"unknown key '{key}' in {owner}; {needs}{did_you_mean(key, forms)}",
            at_key=True,
        )
    if not unknown:
        yield SchemaProblem(path, needs)
