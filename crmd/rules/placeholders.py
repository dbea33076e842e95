"""Missing data in a fire's templates: shown as a visible placeholder, and noted.

A delivery keyed in without its vehicle, or a customer without a recorded name, must not
cost the customer the call that P1-P3 owe them. At run time a template that reads a value
the store does not have renders `[缺 vehicle.model]` in its place, and the names it missed
are collected, so the task says what was missing (crmd/engine/outcomes.py). A rule gives its own
default with Jinja's filter: `{{ vehicle.model | default('您的爱车') }}`.

Messages to customers are different: an SMS reading "尊敬的[缺 customer.name]" must not go
out, so a fire whose customer message misses data fails instead, and is retried once the
data is there (crmd/store/ledger.py).

Misspelt names are not missing data: `crmd check` rejects them before any rule runs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from jinja2 import Undefined

# The records whose fields templates read; each may be absent from the store.
RECORDS = ("customer", "vehicle", "event", "task")

# Names missed by the renders in progress (a list per `noting_missing` block).
_missed: ContextVar[list[str] | None] = ContextVar("crmd_missed", default=None)


def placeholder(name: str) -> str:
    """What a missing value shows in a task's title or note."""
    return f"[缺 {name}]"


class Missing(Undefined):
    """A value the store does not have: renders as a placeholder, and is noted.

    Reading a field of it gives another Missing (`vehicle.model` of a missing vehicle);
    anything else (arithmetic, a call) raises as Jinja's strict undefined does, which fails
    the one fire it happens in.
    """

    __slots__ = ()

    def __str__(self) -> str:
        name = self._undefined_name or "value"
        seen = _missed.get()
        if seen is not None and name not in seen:
            seen.append(name)
        return placeholder(name)

    def __getattr__(self, name: str) -> Any:
        if name[:2] == "__":
            raise AttributeError(name)
        return Missing(name=f"{self._undefined_name}.{name}")

    def __getitem__(self, name: Any) -> Any:
        return Missing(name=f"{self._undefined_name}.{name}")


class RecordFields:
    """A record's fields for rendering: an absent or empty field is Missing.

    A view of the record, not a copy: a fire's templates read a few of its fields, and
    every fire of a page has its own records.
    """

    __slots__ = ("_fields", "_scope")

    def __init__(self, scope: str, fields: Mapping[str, Any]) -> None:
        self._scope = scope
        self._fields = fields

    def __getitem__(self, key: str) -> Any:
        value = self._fields.get(key)
        if value is None or value == "":
            return Missing(name=f"{self._scope}.{key}")
        return value

    def __str__(self) -> str:
        return str(dict(self._fields))


def for_rendering(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context a fire's templates see: missing records and fields become Missing."""
    out = dict(context)
    for scope in RECORDS:
        if scope not in context:
            continue  # this kind of rule has no such record (crmd check says so)
        record = context[scope]
        out[scope] = Missing(name=scope) if record is None else RecordFields(scope, record)
    return out


@contextmanager
def noting_missing() -> Iterator[list[str]]:
    """Collect the names of the missing values rendered inside the block, in order."""
    seen: list[str] = []
    token = _missed.set(seen)
    try:
        yield seen
    finally:
        _missed.reset(token)
