"""Names and ids a user types: an unknown one lists the known ones or suggests the nearest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from crmd.cli import known
from crmd.errors import NotFound
from crmd.intake.records import upsert_customers
from crmd.testing import Harness


def test_a_known_name_is_no_problem() -> None:
    assert known.problem("role", "sales", ["sales", "gm"]) is None
    known.check("role", "sales", ["sales", "gm"])


def test_few_known_names_are_listed_with_the_nearest() -> None:
    assert known.problem("role", "salse", ["sales", "gm", "sales_manager"]) == (
        "no role 'salse'; did you mean 'sales'?; known: gm, sales, sales_manager"
    )
    cashier = known.problem("role", "cashier", ["sales", "gm"])
    assert cashier == "no role 'cashier'; known: gm, sales"
    assert known.problem("task", 7, []) == "no task 7; there is no task yet"


def test_many_known_names_are_not_listed_but_the_nearest_is_suggested() -> None:
    names = [f"rule-{n:03d}" for n in range(40)] + ["sales-callback"]
    message = known.problem("rule", "sales-calback", names, hint="`crmd check` lists them")
    assert message == (
        "no rule 'sales-calback'; did you mean 'sales-callback'?; `crmd check` lists them"
    )
    assert known.problem("rule", "zzz", names) == "no rule 'zzz'"
    # A slip of case is near, whatever the similarity ratio says.
    assert "did you mean 'AB'?" in str(known.problem("id", "ab", ["AB", *names]))
    with pytest.raises(NotFound, match="did you mean 'sales-callback'"):
        known.check("rule", "sales-calback", names)


@pytest.fixture
def many(make_site: Callable[[str], Harness]) -> Harness:
    h = make_site("rules: []\n")
    with h.store.write() as conn:
        upsert_customers(
            conn,
            [{"id": f"C{n:03d}", "name": "x"} for n in range(300)]
            + [{"id": "VIP-ZHANG", "name": "张"}],
            datetime.now(UTC),
        )
    return h


@pytest.mark.parametrize(
    ("typed", "nearest"),
    [("C0O5", "C005"), ("c123", "C123"), ("C2999", "C299"), ("VIP-ZAHNG", "VIP-ZHANG")],
)
def test_an_unknown_customer_among_many_gets_the_nearest(
    many: Harness, typed: str, nearest: str
) -> None:
    with many.store.read() as conn, pytest.raises(NotFound) as caught:
        known.check_customer(conn, typed)
    message = str(caught.value)
    assert message.startswith(f"no customer {typed!r}; did you mean ")
    assert repr(nearest) in message
    assert message.endswith("; import customers first, or check the id")
    assert "known:" not in message  # 300 are too many to list


def test_a_known_customer_passes(many: Harness) -> None:
    with many.store.read() as conn:
        known.check_customer(conn, "C123")
