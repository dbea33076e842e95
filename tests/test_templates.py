"""Plain templates (text and `{{ name.field }}`) render exactly as Jinja renders them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from jinja2 import UndefinedError

from crmd.rules.templates import _ENV, EventFields, Template

CONTEXTS: list[dict[str, Any]] = [
    {
        "customer": {"name": "张三", "phone": None, "member": True, "items": "x"},
        "event": EventFields({"department": "售后"}),
        "fire": {"at": datetime(2026, 11, 5, 9, 0, tzinfo=UTC), "rule": "r"},
        "n": 3,
    },
    {"customer": None, "event": EventFields(), "fire": {}, "n": None},
    {"customer": {}, "fire": {"at": None}},
]
SOURCES = [
    "销售回访 {{ customer.name }}",
    "{{customer.phone}} / {{ customer.member }} / {{ n }}",
    "{{ event.department }}{{ event.nothing }}",  # free-form data: a missing field is empty
    "at {{ fire.at }} by {{ fire.rule }}\n",
    "{{- customer.name -}}   !",
    "{{ customer.items }}",  # a dict's method name: Jinja's getattr decides, both ways
    "{{ range }}",  # a Jinja global
    "{{ nobody }}",
    "{{ customer.name | date }}",  # a filter: Jinja itself renders it
    "no lookup at all",
    "",
]


def _outcome(render: Any, context: dict[str, Any]) -> tuple[str, str]:
    try:
        return "ok", render(context)
    except (UndefinedError, TypeError, AttributeError, ValueError) as exc:
        return "error", type(exc).__name__


@pytest.mark.parametrize("source", SOURCES)
def test_a_template_renders_as_jinja_does(source: str) -> None:
    template = Template(source)
    jinja = _ENV.from_string(source)
    for context in CONTEXTS:
        assert _outcome(template.render, context) == _outcome(jinja.render, context), context


def test_only_text_and_plain_lookups_skip_jinja() -> None:
    assert Template("回访 {{ customer.name }}")._parts == ("回访 ", ("customer", "name"))
    assert Template("{{ customer.name | date }}")._parts is None
    assert Template("{% if n %}x{% endif %}")._parts is None
    assert Template("fixed")._constant == "fixed"
    with pytest.raises(UndefinedError):
        Template("{{ customer.nickname }}").render({"customer": {"name": "张三"}})
