"""Message and title templates: Jinja2 in a sandbox, strict about undefined names.

Templates are checked once, when rules load, against a sample of what their rule's fires
will give them (crmd.rules.fieldcheck), and rendered per fire.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from jinja2 import Environment, StrictUndefined, Undefined, nodes

from crmd.rules.placeholders import RecordFields
from crmd.rules.sandbox import BoundedSandbox


def _strftime(value: date | datetime | Undefined | None, form: str) -> str:
    if value is None:
        return ""
    if isinstance(value, Undefined):
        return str(value)  # a missing date shows its placeholder (crmd.rules.placeholders)
    return value.strftime(form)


def _date(value: date | datetime | None) -> str:
    return _strftime(value, "%Y-%m-%d")


def _time(value: datetime | None) -> str:
    return _strftime(value, "%H:%M")


def _datetime(value: datetime | None) -> str:
    return _strftime(value, "%Y-%m-%d %H:%M")


FILTERS = {"date": _date, "time": _time, "datetime": _datetime}
# Bounded: a template's `**`, `*` and `%` cannot hang or exhaust the process (crmd.rules.sandbox).
_ENV = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
_ENV.filters.update(FILTERS)


# A part of a plain template: literal text, or a name and maybe one field of it.
Part = str | tuple[str, str | None]
_MISSING = object()
# Names a dict has as attributes (`items`, `keys`...): Jinja's `x.keys` finds the method.
_DICT_ATTRIBUTES = frozenset(dir(dict))


def _plain_parts(source: str) -> tuple[Part, ...] | None:
    """A template made only of text and `{{ name }}` / `{{ name.field }}`, as its parts;
    None for any other (filters, tests, blocks), which Jinja renders."""
    parts: list[Part] = []
    for node in _ENV.parse(source).body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                parts.append(child.data)
            elif isinstance(child, nodes.Name) and child.ctx == "load":
                parts.append((child.name, None))
            elif (
                isinstance(child, nodes.Getattr)
                and isinstance(child.node, nodes.Name)
                and child.node.ctx == "load"
            ):
                parts.append((child.node.name, child.attr))
            else:
                return None
    return tuple(parts)


class Template:
    """A compiled template; compiled once at rule load, rendered per fire.

    Most titles and messages are text with a few `{{ customer.name }}` in it: those are
    rendered by joining their parts, each looked up with the sandbox's own getattr and
    undefined (so a missing name fails as in Jinja), without building a Jinja context per
    fire. Text without any lookup is rendered once.
    """

    __slots__ = ("_compiled", "_constant", "_parts", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        # Raises jinja2.TemplateSyntaxError; the rule loader turns it into a located error.
        self._compiled = _ENV.from_string(source)
        self._parts = _plain_parts(source)
        self._constant: str | None = None
        if self._parts is not None and all(isinstance(p, str) for p in self._parts):
            self._constant = "".join(p for p in self._parts if isinstance(p, str))

    def render(self, context: Mapping[str, Any]) -> str:
        if self._constant is not None:
            return self._constant
        if self._parts is None:
            return self._compiled.render(context)
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            name, attr = part
            value = context.get(name, _MISSING)
            if value is _MISSING:
                value = _ENV.globals.get(name, _MISSING)
            if value is _MISSING:
                value = _ENV.undefined(name=name)
            if attr is not None:
                if type(value) is RecordFields:
                    value = value[
                        attr
                    ]  # a missing field is a placeholder (crmd.rules.placeholders)
                elif type(value) is dict and attr in value and attr not in _DICT_ATTRIBUTES:
                    # A field of a record: what Jinja finds too, after its attribute lookup
                    # fails (an exception per field, the larger part of a render's cost).
                    value = value[attr]
                else:
                    value = _ENV.getattr(value, attr)
            out.append(str(value))  # as Jinja outputs it; an undefined value raises here
        return "".join(out)

    def lookups(self) -> tuple[tuple[str, str | None], ...] | None:
        """The (name, field) pairs a plain template looks up; None for any other template."""
        if self._parts is None:
            return None
        return tuple(p for p in self._parts if not isinstance(p, str))

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


_PARSER = Environment()  # parses only: the names and fields a template uses
# A name a template looks up, the field it takes of it (None: the whole value), the line.
Reference = tuple[str, str | None, int]


def template_references(template: Template) -> tuple[Reference, ...]:
    """Every name a template reads from its context, with the field it takes and its line.

    `customer.name` and `customer['name']` take a field; a bare `customer` (a loop over it,
    a filter on it) takes the whole value. Names the template sets itself (`{% set %}`,
    loop variables) are its own and left out. For a plain template (Template.lookups) these
    are exactly its lookups; `crmd check` (crmd.rules.fieldcheck) checks every template's.
    """
    tree = _PARSER.parse(template.source)
    own = {n.name for n in tree.find_all(nodes.Name) if n.ctx != "load"} | {"loop"}
    found: list[Reference] = []
    inside: set[int] = set()  # names already counted with their field
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        field: str | None = None
        if isinstance(node, nodes.Getattr):
            field = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            field = node.arg.value if isinstance(node.arg.value, str) else None
        target = getattr(node, "node", None)
        if not isinstance(target, nodes.Name) or target.ctx != "load" or target.name in own:
            continue
        found.append((target.name, field, node.lineno))
        inside.add(id(target))
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in own and id(name) not in inside:
            found.append((name.name, None, name.lineno))
    return tuple(sorted(found, key=lambda r: r[2]))
