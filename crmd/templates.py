"""Message and title templates: Jinja2 in a sandbox, strict about undefined names."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment


def _date(value: date | datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d")


def _time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%H:%M")


def _datetime(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M")


_ENV = SandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
)
_ENV.filters.update({"date": _date, "time": _time, "datetime": _datetime})


class Template:
    """A compiled template; compiled once at rule load, rendered per fire."""

    __slots__ = ("_compiled", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        # Raises jinja2.TemplateSyntaxError; the rule loader turns it into a located error.
        self._compiled = _ENV.from_string(source)

    def render(self, context: Mapping[str, Any]) -> str:
        return self._compiled.render(context)

    def check(self, context: Mapping[str, Any]) -> str | None:
        """Render against a sample context; return the problem in plain words, or None."""
        try:
            self._compiled.render(context)
        except TemplateError as exc:
            return f"template error in {self.source!r}: {exc}"
        except (TypeError, ValueError, AttributeError) as exc:
            return f"template error in {self.source!r}: {exc}"
        return None

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Template) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)


class EventFields(dict[str, Any]):
    """An event's fields for templates: data is free-form, so a missing field renders empty."""

    def __missing__(self, key: str) -> str:
        return ""
