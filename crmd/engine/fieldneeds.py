"""Which customer, vehicle and event fields a rule reads, so a fire builds only those.

A page of 10,000 fires reads 10,000 customers. Most rules use a name, a phone number and a
flag or two; converting every column of every row (the JSON attributes, the timestamps)
cost more than the rest of building the contexts. A rule whose templates and conditions
are simple enough to read here gets only the columns it names; any other (a Jinja filter
or loop, a whole record, a field that is an attribute or a stored date) reads whole rows,
as before, so what a fire sees never depends on this analysis guessing right. An event's
fields are narrowed the same way: a rule that names none gets an empty `event` (most
callbacks name only the customer), one with a template this module cannot read gets all.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Table

from crmd.rules.rule import (
    CancelAction,
    EmailAction,
    EmitAction,
    RoleChoice,
    Rule,
    SmsAction,
    TaskAction,
)
from crmd.rules.templates import Template, template_references
from crmd.store.tables import customers, vehicles

# Per scope: the columns to read (the id always among them), or None for whole rows; for
# "event", the field names (columns or data keys) to build, or None for all of them.
Needs = dict[str, tuple[str, ...] | None]
_TABLES: dict[str, Table] = {"customer": customers, "vehicle": vehicles}
# Columns that record_fields reshapes or merges other fields into: read whole rows.
_WHOLE = frozenset({"attributes", "birthday_md"})


def fields_needed(rule: Rule) -> Needs:
    """The customer and vehicle columns and the event fields a rule's fires read."""
    used: dict[str, set[str]] = {"customer": {"id"}, "vehicle": {"id"}, "event": set()}
    whole: set[str] = set()
    for scope, name in _paths(rule):
        if scope not in used:
            continue  # task, site, fire: small, built whole
        if scope == "event":
            # An event's fields are its columns and its free-form data: any name may be one.
            if name is None:
                whole.add(scope)
            else:
                used[scope].add(name)
        elif name is None or name in _WHOLE or name not in _TABLES[scope].c:
            whole.add(scope)
        else:
            used[scope].add(name)
    if any(path is None for path in _template_paths(rule)):
        whole.update(used)  # a template this module cannot read may use anything
    needs: Needs = {}
    for scope, names in used.items():
        if scope in whole:
            needs[scope] = None
        elif scope == "event":
            needs[scope] = tuple(sorted(names))
        else:  # in table order
            needs[scope] = tuple(c for c in _TABLES[scope].c.keys() if c in names)
    return needs


def _paths(rule: Rule) -> Iterator[tuple[str, str | None]]:
    for condition in rule.conditions:
        scope, _, name = condition.path.partition(".")
        yield scope, name or None
    for path in _template_paths(rule):
        if path is not None:
            yield path
    for action in rule.actions:
        if isinstance(action, TaskAction) and isinstance(action.role, RoleChoice):
            yield _split(action.role.field)
        elif isinstance(action, SmsAction):
            yield from (("customer", "phone"), ("customer", "opt_out"))
        elif isinstance(action, EmailAction):
            yield from (("customer", "email"), ("customer", "opt_out"))
        elif isinstance(action, CancelAction) and action.matching is not None:
            yield _split(action.matching)


def _template_paths(rule: Rule) -> Iterator[tuple[str, str | None] | None]:
    """(scope, field) per lookup in the rule's templates; None for a template it cannot read."""
    for template in _templates(rule):
        if template.lookups() is None:
            yield None
        else:
            yield from ((name, field) for name, field, _ in template_references(template))


def _templates(rule: Rule) -> Iterator[Template]:
    for action in rule.actions:
        if isinstance(action, TaskAction):
            yield action.title
            if action.note is not None:
                yield action.note
        elif isinstance(action, SmsAction):
            yield action.text
        elif isinstance(action, EmailAction):
            yield from (action.subject, action.body)
        elif isinstance(action, EmitAction):
            yield from (template for _, template in action.data)


def _split(path: str) -> tuple[str, str | None]:
    scope, _, name = path.partition(".")
    return scope, name or None
