"""Importing a CSV file of customers, vehicles or events: every row checked, then all or none.

A file is read twice, streaming. The first pass parses and checks every row and collects
every problem (`file:row N: what is wrong; what to do`), asking the store about referenced
customers and vehicles in bulk. Only a file without a single problem is read again and
written, in chunks, inside one transaction: a failure half-way leaves nothing behind.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is
row 2, a cell holding a line break does not start a new row.

Cell values: surrounding white space is stripped; empty optional cells mean "no value".
An event's `at` is ISO-8601 (`2026-11-23 09:00`, `2026-11-23T09:00+08:00`); without an
offset it is the site's local time. A birthday is YYYY-MM-DD or YYYY/MM/DD (Excel's way).
Extra columns (any column a kind does not know) become an event's `data` or a customer's
or vehicle's `attributes`; empty extra cells are left out. An extra value written as a
plain whole number of at most 15 digits (`45000`, `-3`; not `007`, `+86…`, `4.5`, `1,000`)
is stored as an int, so rules can compare it (`event.score: {lt: 7}`); every other value
stays text, exactly as written. 15 digits keeps the number exact in any JSON reader.
A customer's phone is checked and written one way (crmd.intake.phones.customer_phone), an e-mail
address checked (crmd.intake.emails); an event's vehicle must be its customer's.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from crmd.errors import ImportFileError
from crmd.intake.csvrows import LAYOUTS, RowParser, changed_error, file_stamp, records
from crmd.intake.records import IntakeResult, record_events, upsert_customers, upsert_vehicles
from crmd.site import Site
from crmd.store import queries as q
from crmd.store.database import Store
from crmd.store.tables import customers

logger = logging.getLogger(__name__)

KINDS = ("customers", "vehicles", "events")
# Rows written per statement batch, and referenced ids looked up per round of queries.
CHUNK = 5000
# Problems listed in the error; the rest are counted.
MAX_LISTED = 50


def import_csv(
    store: Store, site: Site, path: Path | str, kind: str, now: datetime
) -> IntakeResult:
    """Import every row of a CSV file of `kind`, or, if any row is wrong, none of them.

    Raises ImportFileError listing the problems (`file:row N: ...`); nothing is stored then.
    Importing the same file again changes nothing; a changed customer or vehicle row updates
    the stored one; an event already stored (by id) is left as it is.
    """
    if kind not in LAYOUTS:
        raise ImportFileError(f"cannot import {kind!r}; the kinds are {', '.join(KINDS)}")
    path = Path(path)
    stamp = file_stamp(path)
    parser = RowParser(LAYOUTS[kind], site, str(path))

    problems, checked = _check(store, parser, path)
    if problems.count:
        raise ImportFileError(problems.report())

    result = IntakeResult()
    rows = 0
    with store.write() as conn:
        for batch in _batches(parser, path):
            rows += len(batch)
            _add(result, _write(conn, parser.layout.kind, batch, site, now))
        # The file was read twice; if it changed in between, what was checked is not what
        # was written. Raising here rolls the transaction back.
        if rows != checked or file_stamp(path) != stamp:
            raise changed_error(path)
    result.warnings = parser.warnings()  # the CLI prints them
    logger.info(
        "imported %s: %d added, %d changed, %d unchanged",
        path,
        result.added,
        result.changed,
        result.unchanged,
        extra={"kind": kind, "rows": rows},
    )
    return result


# ---------------------------------------------------------------- checking rows


class _Problems:
    """The problems of a file: all counted, the first MAX_LISTED by row kept."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.count = 0
        # A max-heap (by negated keys) of the smallest (row, order) seen: memory stays
        # bounded even if every row of a million is wrong.
        self._kept: list[tuple[int, int, str]] = []

    def add(self, row: int, message: str) -> None:
        self.count += 1
        item = (-row, -self.count, message)
        if len(self._kept) < MAX_LISTED:
            heapq.heappush(self._kept, item)
        elif item > self._kept[0]:
            heapq.heapreplace(self._kept, item)

    def report(self) -> str:
        lines = [
            f"{self.where}:row {-row}: {message}" for row, _, message in sorted(self._kept)[::-1]
        ]
        if self.count > len(lines):
            lines.append(f"... and {self.count - len(lines)} more")
        lines.append(
            f"{self.where}: {self.count} problem{'s' if self.count != 1 else ''}; "
            f"nothing was imported. Fix the file and import it again."
        )
        return "\n".join(lines)


@dataclass
class _References:
    """Ids of customers or vehicles that rows name, checked against the store in bulk.

    `lookup` answers which of some ids the store holds, each with its owner (a vehicle's
    customer; "" for a customer). A row may say whose the thing must be (an event's
    customer): a vehicle of another customer is refused, as a delivery recorded against the
    wrong car or the wrong person would send one customer's callback about another's car.
    `owners` are the customers' references: an owner that is not in the store is reported
    there, once, not again as the wrong owner here.
    """

    store: Store
    lookup: Callable[[Connection, list[str]], Mapping[str, str]]
    message: Callable[[str], str]
    problems: _Problems
    owners: _References | None = None
    known: dict[str, str] = field(default_factory=dict)
    missing: set[str] = field(default_factory=set)
    pending: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    pending_rows: int = 0

    def note(self, row: int, ref: str, owner: str = "") -> None:
        owner_pending = self.owners is not None and owner in self.owners.pending
        if ref in self.known and not owner_pending:
            self._check_owner(row, ref, owner)
            return
        if ref in self.missing:
            self.problems.add(row, self.message(ref))
            return
        self.pending.setdefault(ref, []).append((row, owner))
        self.pending_rows += 1
        if self.pending_rows >= CHUNK:
            self.flush()

    def _check_owner(self, row: int, ref: str, owner: str) -> None:
        actual = self.known[ref]
        if self.owners is not None and owner in self.owners.missing:
            return
        if owner and actual and actual != owner:
            self.problems.add(
                row,
                f"vehicle {ref!r} belongs to customer {actual!r}, not {owner!r}; "
                f"check the vehicle_id and the customer_id",
            )

    def flush(self) -> None:
        if not self.pending:
            return
        if self.owners is not None:
            self.owners.flush()  # so that an unknown owner is known as such
        with self.store.read() as conn:
            found = self.lookup(conn, list(self.pending))
        for ref, rows in self.pending.items():
            if ref in found:
                self.known[ref] = found[ref]
                for row, owner in rows:
                    self._check_owner(row, ref, owner)
                continue
            self.missing.add(ref)
            for row, _owner in rows:
                self.problems.add(row, self.message(ref))
        self.pending.clear()
        self.pending_rows = 0


def _customers_in_store(conn: Connection, ids: list[str]) -> Mapping[str, str]:
    # Ids only: whole rows would cost most of the time of checking a large event file.
    return dict.fromkeys(q.existing_ids(conn, customers, ids), "")


def _check(store: Store, parser: RowParser, path: Path) -> tuple[_Problems, int]:
    """First pass: parse every row, collecting every problem; store nothing.

    Returns the problems and the number of data rows.
    """
    problems = _Problems(str(path))
    vehicles_file = parser.layout.kind == "vehicles"
    hint = "import customers first" if vehicles_file else "check the id, or import customers first"
    customer_refs = _References(
        store,
        _customers_in_store,
        lambda ref: f"customer {ref!r} is not in the store; {hint}",
        problems,
    )
    vehicle_refs = _References(
        store,
        q.vehicle_owners,
        lambda ref: f"vehicle {ref!r} is not in the store; check the id, or import vehicles first",
        problems,
        owners=customer_refs,
    )
    first_row: dict[str, int] = {}
    checked = 0
    for row, parsed in parser.parse(records(path)):
        checked += 1
        for message in parsed.problems:
            problems.add(row, message)
        if parsed.id:
            seen = first_row.setdefault(parsed.id, row)
            if seen != row:
                problems.add(
                    row, f"id {parsed.id!r} is also on row {seen}; each row needs its own id"
                )
        if parsed.customer_id:
            customer_refs.note(row, parsed.customer_id)
        if parsed.vehicle_id:
            vehicle_refs.note(row, parsed.vehicle_id, owner=parsed.customer_id)
    customer_refs.flush()
    vehicle_refs.flush()
    return problems, checked


def _batches(parser: RowParser, path: Path) -> Iterator[list[Any]]:
    """Second pass: the parsed records, CHUNK at a time."""
    batch: list[Any] = []
    for _row, parsed in parser.parse(records(path)):
        if parsed.problems:
            raise changed_error(path)
        batch.append(parsed.record)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _write(
    conn: Connection, kind: str, batch: list[Any], site: Site, now: datetime
) -> IntakeResult:
    if kind == "customers":
        return upsert_customers(conn, batch, now)
    if kind == "vehicles":
        return upsert_vehicles(conn, batch, now)
    return record_events(conn, batch, site.event_types, now)


def _add(total: IntakeResult, part: IntakeResult) -> None:
    total.added += part.added
    total.changed += part.changed
    total.unchanged += part.unchanged
