"""A fire reads only the customer and vehicle columns its rule uses, or whole rows, and
builds only the event fields it names."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from crmd.engine.fieldneeds import fields_needed
from crmd.store.tables import outbox, tasks
from crmd.testing import Harness

MakeSite = Callable[[str], Harness]

RULES = """
rules:
  - id: plain
    when: {event: sale.delivered, after: 1 day, at: '09:00'}
    where: {customer.member: true}
    do:
      - task: {role: sales_callback, title: '回访 {{ customer.name }} {{ vehicle.plate }}'}
      - sms: {text: '{{ customer.name }}，您好'}
  - id: filtered
    when: {event: sale.delivered, after: 1 day, at: '09:00'}
    do: [{task: {role: sales_callback, title: '{{ customer.name | upper }}'}}]
  - id: attribute
    when: {event: sale.delivered, after: 1 day, at: '09:00'}
    do: [{task: {role: sales_callback, title: '{{ customer.name }} {{ customer.attributes }}'}}]
  - id: eventful
    when: {event: sale.delivered, after: 1 day, at: '09:00'}
    where: {event.model: 轩逸}
    do:
      - task:
          role: sales_callback
          title: '{{ event.id }} {{ event.at }} {{ event.model }} [{{ event.missing }}]'
"""


@pytest.fixture
def declared(tmp_path: Path) -> None:
    """The site gives sale.delivered two fields of its own (crmd check refuses others)."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "site.yaml").write_text(
        "event_types:\n  sale.delivered: {fields: [model, missing]}\n", encoding="utf-8"
    )


@pytest.mark.usefixtures("declared")
def test_a_rule_reads_the_columns_it_names_or_whole_rows(make_site: MakeSite) -> None:
    h = make_site(RULES)
    rules = {r.id: r for r in h.engine.rules}
    # The sms needs the phone and the opt-out flag, the condition `member`; table order.
    assert fields_needed(rules["plain"]) == {
        "customer": ("id", "name", "phone", "member", "opt_out"),
        "vehicle": ("id", "plate"),
        "event": (),  # names no event field: none is built
    }
    # A filter: the template is Jinja's to render, and may read anything.
    assert fields_needed(rules["filtered"]) == {"customer": None, "vehicle": None, "event": None}
    # The attributes (where extra fields and stored dates merge): whole customer rows.
    assert fields_needed(rules["attribute"]) == {
        "customer": None,
        "vehicle": ("id",),
        "event": (),
    }
    # Event fields are columns or data keys, named by templates and conditions.
    assert fields_needed(rules["eventful"])["event"] == ("at", "id", "missing", "model")


@pytest.mark.usefixtures("declared")
def test_narrowed_and_whole_contexts_render_the_same_fields(make_site: MakeSite) -> None:
    h = make_site(RULES)
    h.tick("2026-11-01 08:00")
    h.customer("C1", name="张三", phone="13800000001", member=True, attributes={"level": "金卡"})
    h.customer("C2", name="李四", phone="13800000002", member=True, opt_out=True)
    h.customer("C3", name="王五", phone="13800000003", member=False)
    for n in (1, 2, 3):
        h.vehicle(f"V{n}", f"C{n}", plate=f"沪A1234{n}")
        h.event(
            "sale.delivered",
            "2026-11-02 15:00",
            f"C{n}",
            f"V{n}",
            {"model": "轩逸" if n < 3 else "天籁"},
            f"E{n}",
        )
    report = h.tick("2026-11-03 09:00")
    assert report.errors == []
    with h.store.read() as conn:
        titles = {
            (t.rule_id, t.customer_id): t.title
            for t in conn.execute(select(tasks.c.rule_id, tasks.c.customer_id, tasks.c.title))
        }
        messages = conn.execute(select(outbox.c.customer_id, outbox.c.body)).all()
    assert titles[("plain", "C1")] == "回访 张三 沪A12341"
    assert titles[("plain", "C2")] == "回访 李四 沪A12342"
    assert ("plain", "C3") not in titles  # not a member: the condition read `member`
    assert titles[("filtered", "C1")] == "张三"
    assert titles[("attribute", "C1")] == "张三 {'level': '金卡'}"
    # The event's column, time (in the site's zone), data field and a declared field the
    # event does not carry (its placeholder, crmd.rules.placeholders).
    assert titles[("eventful", "C1")] == "E1 2026-11-02 15:00:00+08:00 轩逸 [[缺 event.missing]]"
    assert ("eventful", "C3") not in titles  # the condition read the event's data
    # The opted-out customer gets no message: the sms read `opt_out`.
    assert messages == [("C1", "张三，您好")]
