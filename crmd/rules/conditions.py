"""Conditions (`where:`): field tests compiled once, evaluated per candidate fire."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["eq", "ne", "in", "not_in", "lt", "lte", "gt", "gte", "exists"]
OPERATORS: tuple[str, ...] = ("not", "in", "not_in", "lt", "lte", "gt", "gte", "exists")
SCOPES = ("event", "customer", "vehicle")


@dataclass(frozen=True)
class Condition:
    """One test of a field (`customer.member`, `event.outcome`) against a value."""

    path: str
    op: Op
    value: Any

    @property
    def scope(self) -> str:
        return self.path.split(".", 1)[0]

    def test(self, context: Mapping[str, Mapping[str, Any] | None]) -> bool:
        scope, _, name = self.path.partition(".")
        record = context.get(scope)
        actual = None if record is None else record.get(name)
        if self.op == "exists":
            present = actual is not None and actual != ""
            return present is bool(self.value)
        if self.op == "eq":
            return bool(actual == self.value)
        if self.op == "ne":
            return bool(actual != self.value)
        if self.op == "in":
            return actual in self.value
        if self.op == "not_in":
            return actual not in self.value
        if actual is None:
            return False
        try:
            if self.op == "lt":
                return bool(actual < self.value)
            if self.op == "lte":
                return bool(actual <= self.value)
            if self.op == "gt":
                return bool(actual > self.value)
            return bool(actual >= self.value)
        except TypeError:
            # A text field compared with a number: the condition simply does not hold.
            return False


def compile_matcher(path: str, matcher: Any) -> Condition:
    """Turn one `where:` entry (scalar, list or {op: value}) into a Condition."""
    if isinstance(matcher, list):
        return Condition(path, "in", tuple(matcher))
    if isinstance(matcher, Mapping):
        ((key, value),) = matcher.items()
        if key == "not":
            return Condition(path, "ne", value)
        if key in ("in", "not_in"):
            return Condition(path, key, tuple(value))
        return Condition(path, key, value)
    return Condition(path, "eq", matcher)


def all_hold(conditions: tuple[Condition, ...], context: Mapping[str, Any]) -> bool:
    return all(c.test(context) for c in conditions)
