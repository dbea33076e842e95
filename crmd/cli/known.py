"""Names and ids a user types (a role, a rule, a customer, a vehicle, a task, a message),
checked against the known ones.

An unknown one is an error that lists the known ones when they are few, or suggests the
nearest: `crmd tasks --role salse` answering "no tasks" would hide the typo. Every command
checks what it is given through this module, so the errors read alike.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from sqlalchemy import Column, Connection, Table, exists, select

from crmd.errors import NotFound
from crmd.store.tables import customers, outbox, tasks, vehicles

# Known names listed in full up to this many; beyond, only the nearest are suggested.
LISTED = 12
# Ids read from each side of a mistyped one, to find the nearest among them: a store of a
# million customers is not read whole for a typo.
NEIGHBOURS = 50


def problem(kind: str, value: object, known: Iterable[str], hint: str = "") -> str | None:
    """None if `value` is one of `known`, else what to say: the known ones or the nearest.

    `kind` names the thing in the singular ("role"); `hint` says where to look when the
    known ones are too many to list."""
    names = sorted(set(known))
    text = str(value)
    if text in names:
        return None
    shown = repr(value) if isinstance(value, str) else text
    message = f"no {kind} {shown}"
    close = _nearest(text, names)
    if not close:
        # A case slip (`c001` for `C001`) is near whatever the ratio says.
        close = [n for n in names if n.lower() == text.lower()]
    if close:
        message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    if not names:
        message += f"; there is no {kind} yet"
    elif len(names) <= LISTED:
        message += f"; known: {', '.join(names)}"
    elif hint:
        message += f"; {hint}"
    return message


def _nearest(text: str, names: list[str]) -> list[str]:
    """Up to three names nearest to `text`: by difflib's ratio, then, among equals, by how
    many characters stand in the same place (`C005` before `C105` for `C0O5`)."""
    matcher = difflib.SequenceMatcher(b=text)
    scored = []
    for name in names:
        matcher.set_seq1(name)
        if matcher.real_quick_ratio() >= 0.6 and matcher.quick_ratio() >= 0.6:
            ratio = matcher.ratio()
            if ratio >= 0.6:
                same = sum(a == b for a, b in zip(name, text, strict=False))
                scored.append((round(ratio, 6), same, name))
    scored.sort(key=lambda item: (-item[0], -item[1], item[2]))
    return [name for _, _, name in scored[:3]]


def check(kind: str, value: object, known: Iterable[str], hint: str = "") -> None:
    """Raise NotFound (see `problem`) unless `value` is one of `known`."""
    message = problem(kind, value, known, hint)
    if message is not None:
        raise NotFound(message)


def _present(conn: Connection, column: Column[object], value: object) -> bool:
    return bool(conn.execute(select(exists().where(column == value))).scalar())


def _near(conn: Connection, column: Column[object], value: object) -> list[str]:
    """The ids of a table next to `value` (all of them, when there are few)."""
    first = list(conn.execute(select(column).order_by(column).limit(LISTED + 1)).scalars())
    if len(first) <= LISTED:
        return [str(v) for v in first]
    probes = {value}
    if isinstance(value, str):
        # A slip early in an id (`C0O5` for `C005`) sorts it far from the right one; its
        # first half, and either case, sort it back among its neighbours.
        for part in (value, value[: len(value) // 2]):
            probes |= {part, part.upper(), part.lower()}
    found: set[object] = set()
    for probe in probes:
        below = select(column).where(column < probe).order_by(column.desc()).limit(NEIGHBOURS)
        above = select(column).where(column > probe).order_by(column).limit(NEIGHBOURS)
        found.update(conn.execute(below).scalars())
        found.update(conn.execute(above).scalars())
    return [str(v) for v in found]


def _check_id(conn: Connection, table: Table, kind: str, value: object, hint: str) -> None:
    column = table.c.id
    if not _present(conn, column, value):
        message = problem(kind, value, _near(conn, column, value), hint)
        # Among neighbours only: "known" would list a sample, not the known ones.
        raise NotFound(message or f"no {kind} {value}")


def check_customer(conn: Connection, customer_id: str) -> None:
    _check_id(conn, customers, "customer", customer_id, "import customers first, or check the id")


def check_vehicle(conn: Connection, vehicle_id: str, customer_id: str | None) -> None:
    """The vehicle exists and, if a customer is named, is that customer's."""
    _check_id(conn, vehicles, "vehicle", vehicle_id, "import vehicles first, or check the id")
    owner = conn.execute(
        select(vehicles.c.customer_id).where(vehicles.c.id == vehicle_id)
    ).scalar_one()
    if customer_id and owner != customer_id:
        raise NotFound(
            f"vehicle {vehicle_id!r} belongs to customer {owner!r}, not {customer_id!r}; "
            f"check --vehicle and --customer"
        )


def check_task(conn: Connection, task_id: int) -> None:
    _check_id(conn, tasks, "task", task_id, "`crmd tasks --all` lists them")


def check_message(conn: Connection, message_id: int) -> None:
    _check_id(conn, outbox, "message", message_id, "`crmd outbox` lists them")
