"""A site with many sales callbacks falling due at once, and a spy on the engine's reads:
for the paging and report tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from crmd.intake.records import NewEvent, record_events, upsert_customers
from crmd.store import queries, work
from crmd.testing import Harness

MakeSite = Callable[[str], Harness]

# One task per delivery, three days later at 09:00.
CALLBACK = (
    "rules: [{id: sales-callback, when: {event: sale.delivered, after: 3 days, at: '09:00'},"
    " do: [{task: {role: sales_callback, title: '回访 {{ customer.name }}'}}]}]"
)


def delivered_site(make_site: MakeSite, n: int) -> Harness:
    """A site whose n customers each took delivery on 2 November: n callbacks due on the
    5th at 09:00 (customer Ci's delivery is event di)."""
    h = make_site(CALLBACK)
    h.tick("2026-11-01 08:00")
    now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    with h.store.write() as conn:
        upsert_customers(conn, [{"id": f"C{i}", "name": f"客户{i}"} for i in range(n)], now)
        delivered = h.local("2026-11-02 15:00")
        new = [NewEvent("sale.delivered", delivered, f"C{i}", id=f"d{i}") for i in range(n)]
        record_events(conn, new, h.site.event_types, now)
    return h


def record_reads(
    monkeypatch: pytest.MonkeyPatch, name: str, note: Callable[[tuple[Any, ...], Any], Any]
) -> list[Any]:
    """Wrap the store's query `name` (of crmd.store.queries or crmd.store.work): each call
    appends note(arguments, result) to the list returned here, in call order."""
    noted: list[Any] = []
    module = queries if hasattr(queries, name) else work
    read = getattr(module, name)

    def recorded(*args: Any) -> Any:
        result = read(*args)
        noted.append(note(args, result))
        return result

    monkeypatch.setattr(module, name, recorded)
    return noted
