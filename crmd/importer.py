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
"""

from __future__ import annotations

import csv
import difflib
import heapq
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Table

from crmd import queries as q
from crmd.errors import ImportFileError
from crmd.intake import IntakeResult, NewEvent, record_events, upsert_customers, upsert_vehicles
from crmd.site import Site
from crmd.store import Store
from crmd.tables import customers, events, vehicles

logger = logging.getLogger(__name__)

KINDS = ("customers", "vehicles", "events")
# Rows written per statement batch, and referenced ids looked up per round of queries.
CHUNK = 5000
# Problems listed in the error; the rest are counted.
MAX_LISTED = 50

_TRUE = frozenset({"true", "yes", "1", "是"})
_FALSE = frozenset({"false", "no", "0", "否", ""})
_DATE = re.compile(r"([0-9]{4})([-/])([0-9]{1,2})\2([0-9]{1,2})")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")


@dataclass(frozen=True)
class _Layout:
    """The columns a kind of file knows, and which of them must be there."""

    kind: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    table: Table


LAYOUTS = {
    "customers": _Layout(
        "customers",
        ("id", "name", "phone", "email", "birthday", "member", "opt_out"),
        ("id",),
        customers,
    ),
    "vehicles": _Layout(
        "vehicles", ("id", "customer_id", "vin", "plate", "model"), ("id", "customer_id"), vehicles
    ),
    "events": _Layout(
        "events", ("id", "type", "at", "customer_id", "vehicle_id"), ("id", "type", "at"), events
    ),
}


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
    stamp = _stamp(path)
    parser = _Parser(LAYOUTS[kind], site, str(path))

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
        if rows != checked or _stamp(path) != stamp:
            raise _changed(path)
    logger.info(
        "imported %s: %d added, %d changed, %d unchanged",
        path,
        result.added,
        result.changed,
        result.unchanged,
        extra={"kind": kind, "rows": rows},
    )
    return result


# ---------------------------------------------------------------- reading


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read the file: {exc.strerror}") from None
    return st.st_size, st.st_mtime_ns


def _changed(path: Path) -> ImportFileError:
    return ImportFileError(
        f"{path}: the file changed while it was being imported; nothing was stored. "
        f"Close it in other programs and import it again."
    )


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Each record of the file with its spreadsheet row number (the header is row 1)."""
    row = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            for row, cells in enumerate(csv.reader(f), start=1):
                yield row, cells
    except UnicodeDecodeError:
        raise ImportFileError(
            f"{path}: line {_first_bad_line(path)} is not UTF-8 text; save the file as UTF-8 "
            f"(in Excel: Save As, 'CSV UTF-8 (逗号分隔)'), not as plain CSV, which is GBK"
        ) from None
    except csv.Error as exc:
        raise ImportFileError(f"{path}:row {row + 1}: not readable as CSV: {exc}") from None
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read the file: {exc.strerror}") from None


def _first_bad_line(path: Path) -> int:
    # The text layer decodes ahead in blocks, so find the line by decoding line by line.
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


def _column_letter(index: int) -> str:
    """A 0-based column index as a spreadsheet names it: A, B, ..., Z, AA, AB, ..."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


@dataclass(frozen=True)
class _Header:
    """Where each column is: known columns by name, extra columns, unnamed ones."""

    known: tuple[tuple[str, int], ...]
    extra: tuple[tuple[str, int], ...]
    unnamed: tuple[int, ...]
    width: int


def _header(layout: _Layout, cells: Sequence[str] | None, where: str) -> _Header:
    expected = ", ".join(layout.columns)
    if cells is None or not any(c.strip() for c in cells):
        raise ImportFileError(
            f"{where}: the first row must be a header naming the columns, e.g. {expected}"
        )
    known: dict[str, int] = {}
    extra: dict[str, int] = {}
    unnamed: list[int] = []
    repeated: list[str] = []
    for index, cell in enumerate(cells):
        name = cell.strip()
        if not name:
            unnamed.append(index)
            continue
        lower = name.lower()
        target, key = (known, lower) if lower in layout.columns else (extra, name)
        if key in target:
            repeated.append(name)
        target[key] = index
    problems = [
        f"{where}:row 1: column {name!r} appears more than once; name each column once"
        for name in repeated
    ]
    problems += [
        f"{where}: missing column {name!r}; the header row (row 1) must name it "
        f"(columns for {layout.kind}: {expected})"
        for name in layout.required
        if name not in known
    ]
    if problems:
        raise ImportFileError("\n".join(problems))
    return _Header(tuple(known.items()), tuple(extra.items()), tuple(unnamed), len(cells))


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
    """Ids of customers or vehicles that rows name, checked against the store in bulk."""

    store: Store
    lookup: Callable[[Connection, list[str]], Iterable[str]]
    message: Callable[[str], str]
    problems: _Problems
    known: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)
    pending: dict[str, list[int]] = field(default_factory=dict)
    pending_rows: int = 0

    def note(self, row: int, ref: str) -> None:
        if ref in self.known:
            return
        if ref in self.missing:
            self.problems.add(row, self.message(ref))
            return
        self.pending.setdefault(ref, []).append(row)
        self.pending_rows += 1
        if self.pending_rows >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self.store.read() as conn:
            found = set(self.lookup(conn, list(self.pending)))
        for ref, rows in self.pending.items():
            if ref in found:
                self.known.add(ref)
                continue
            self.missing.add(ref)
            for row in rows:
                self.problems.add(row, self.message(ref))
        self.pending.clear()
        self.pending_rows = 0


def _ids_in_store(table: Table) -> Callable[[Connection, list[str]], Iterable[str]]:
    """Ids only: whole rows would cost most of the time of checking a large event file."""

    def lookup(conn: Connection, ids: list[str]) -> Iterable[str]:
        return q.existing_ids(conn, table, ids)

    return lookup


def _check(store: Store, parser: _Parser, path: Path) -> tuple[_Problems, int]:
    """First pass: parse every row, collecting every problem; store nothing.

    Returns the problems and the number of data rows.
    """
    problems = _Problems(str(path))
    vehicles_file = parser.layout.kind == "vehicles"
    hint = "import customers first" if vehicles_file else "check the id, or import customers first"
    customer_refs = _References(
        store,
        _ids_in_store(customers),
        lambda ref: f"customer {ref!r} is not in the store; {hint}",
        problems,
    )
    vehicle_refs = _References(
        store,
        _ids_in_store(vehicles),
        lambda ref: f"vehicle {ref!r} is not in the store; check the id, or import vehicles first",
        problems,
    )
    first_row: dict[str, int] = {}
    checked = 0
    for row, parsed in parser.parse(_records(path)):
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
            vehicle_refs.note(row, parsed.vehicle_id)
    customer_refs.flush()
    vehicle_refs.flush()
    return problems, checked


def _batches(parser: _Parser, path: Path) -> Iterator[list[Any]]:
    """Second pass: the parsed records, CHUNK at a time."""
    batch: list[Any] = []
    for _row, parsed in parser.parse(_records(path)):
        if parsed.problems:
            raise _changed(path)
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


# ---------------------------------------------------------------- parsing one row


@dataclass
class _Parsed:
    """One row: what to store, which customer and vehicle it names, and what is wrong."""

    id: str
    record: Any = None
    customer_id: str = ""
    vehicle_id: str = ""
    problems: list[str] = field(default_factory=list)


class _Parser:
    """Turns the rows of one kind of file into records for crmd.intake."""

    def __init__(self, layout: _Layout, site: Site, where: str) -> None:
        self.layout = layout
        self.where = where
        self.timezone: ZoneInfo = site.timezone
        self.event_types = frozenset(site.event_types)
        self._type_list = tuple(site.event_types)
        self._header: _Header | None = None
        self._unknown: dict[str, str] = {}
        # Text columns and their widths (PostgreSQL enforces them; SQLite would not).
        self._widths = tuple(
            (name, width)
            for name in layout.columns
            if isinstance(width := getattr(layout.table.c[name].type, "length", None), int)
        )

    def parse(self, records: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, _Parsed]]:
        """Each non-blank data row, parsed, with its row number."""
        header = _header(self.layout, next(records, (1, None))[1], self.where)
        if self._header is None:
            self._header = header
        elif header != self._header:
            raise _changed(Path(self.where))
        for row, cells in records:
            if not any(c.strip() for c in cells):
                continue  # a blank row, as spreadsheets leave at the end
            yield row, self._row(header, cells)

    def _row(self, header: _Header, cells: list[str]) -> _Parsed:
        width = len(cells)
        values = {name: cells[i].strip() if i < width else "" for name, i in header.known}
        extra: dict[str, Any] = {}
        for name, i in header.extra:
            if i < width and (text := cells[i].strip()):
                extra[name] = int(text) if _INT.fullmatch(text) else text
        parsed = _Parsed(values["id"])
        problems = parsed.problems
        for i in header.unnamed:
            if i < width and cells[i].strip():
                problems.append(
                    f"column {_column_letter(i)} has a value but no name in the header row; "
                    f"name the column in row 1 or clear it"
                )
        if width > header.width and any(c.strip() for c in cells[header.width :]):
            problems.append(
                f"has {width} cells but the header names {header.width} columns; "
                f"name the extra columns in row 1 or clear them"
            )
        if not parsed.id:
            problems.append("id is empty; every row needs an id")
        kind = self.layout.kind
        if kind == "customers":
            parsed.record = self._customer(values, extra, problems)
        elif kind == "vehicles":
            parsed.record = self._vehicle(values, extra, problems)
            parsed.customer_id = values["customer_id"]
        else:
            parsed.record = self._event(values, extra, problems)
            parsed.customer_id = values.get("customer_id", "")
            parsed.vehicle_id = values.get("vehicle_id", "")
        for name, width in self._widths:
            if len(value := values.get(name, "")) > width:
                problems.append(f"{name} has {len(value)} characters; at most {width} fit")
        return parsed

    def _customer(
        self, values: dict[str, str], extra: dict[str, Any], problems: list[str]
    ) -> dict[str, Any]:
        record: dict[str, Any] = dict(values)
        if "phone" in values:
            # Kept as text: a leading 0 or + matters. Spaces are only for reading.
            record["phone"] = "".join(values["phone"].split())
            values["phone"] = record["phone"]
        if "birthday" in values:
            record["birthday"] = _date(values["birthday"], problems)
        for name in ("member", "opt_out"):
            if name in values:
                record[name] = _flag(name, values[name], problems)
        record["attributes"] = extra
        return record

    def _vehicle(
        self, values: dict[str, str], extra: dict[str, Any], problems: list[str]
    ) -> dict[str, Any]:
        if not values["customer_id"]:
            problems.append("customer_id is empty; every vehicle belongs to a customer")
        return {**values, "attributes": extra}

    def _event(
        self, values: dict[str, str], extra: dict[str, Any], problems: list[str]
    ) -> NewEvent | None:
        type_ = values["type"]
        if not type_:
            problems.append("type is empty; write the event type, e.g. sale.delivered")
        elif type_ not in self.event_types:
            problems.append(self._unknown_type(type_))
        at = self._instant(values["at"], problems)
        if problems or at is None:
            return None
        return NewEvent(
            type=type_,
            at=at,
            customer_id=values.get("customer_id") or None,
            vehicle_id=values.get("vehicle_id") or None,
            data=extra,
            id=values["id"],
        )

    def _unknown_type(self, type_: str) -> str:
        # Cached: a file may repeat one misspelt type on every row.
        if type_ not in self._unknown:
            close = difflib.get_close_matches(type_, self._type_list, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            self._unknown[type_] = (
                f"event type {type_!r} is not known{guess}; known types: "
                f"{', '.join(self._type_list)}. A site adds its own under event_types: "
                f"in site.yaml"
            )
        return self._unknown[type_]

    def _instant(self, text: str, problems: list[str]) -> datetime | None:
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            example = f"2026-11-23 09:00 (site time, {self.timezone.key}) or 2026-11-23T09:00+08:00"
            problems.append(
                f"at {text!r} is not an ISO-8601 time; write e.g. {example}"
                if text
                else f"at is empty; write when it happened, e.g. {example}"
            )
            return None
        if value.tzinfo is None:
            # Without an offset it is the dealership's wall-clock time.
            value = value.replace(tzinfo=self.timezone)
        return value.astimezone(UTC)


def _date(text: str, problems: list[str]) -> date | None:
    if not text:
        return None
    match = _DATE.fullmatch(text)
    if match:
        try:
            return date(int(match[1]), int(match[3]), int(match[4]))
        except ValueError:
            pass
    problems.append(f"birthday {text!r} is not a date; write YYYY-MM-DD")
    return None


def _flag(name: str, text: str, problems: list[str]) -> bool:
    lower = text.lower()
    if lower in _TRUE:
        return True
    if lower not in _FALSE:
        problems.append(
            f"{name} {text!r} is not yes or no; write true/false, yes/no, 1/0 or 是/否 "
            f"(empty means no)"
        )
    return False
