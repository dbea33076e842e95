"""CSV files of customers, vehicles or events as rows: the layouts each kind of file has,
reading a file (UTF-8, with or without BOM, spreadsheet row numbers), its header, and
parsing each row's cells into records for crmd.intake.records, with what is wrong with them.

crmd.intake.importer checks every row with this, then writes all of them or none.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table

from crmd.errors import ImportFileError
from crmd.intake.emails import InvalidEmail, customer_email
from crmd.intake.phones import InvalidPhone, customer_phone
from crmd.intake.records import NewEvent
from crmd.site import Site
from crmd.store.tables import customers, events, vehicles

_TRUE = frozenset({"true", "yes", "1", "是"})
_FALSE = frozenset({"false", "no", "0", "否", ""})
_DATE = re.compile(r"([0-9]{4})([-/])([0-9]{1,2})\2([0-9]{1,2})")
_INT = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")


@dataclass(frozen=True)
class Layout:
    """The columns a kind of file knows, and which of them must be there."""

    kind: str
    columns: tuple[str, ...]
    required: tuple[str, ...]
    table: Table


LAYOUTS = {
    "customers": Layout(
        "customers",
        ("id", "name", "phone", "email", "birthday", "member", "opt_out"),
        ("id",),
        customers,
    ),
    "vehicles": Layout(
        "vehicles", ("id", "customer_id", "vin", "plate", "model"), ("id", "customer_id"), vehicles
    ),
    "events": Layout(
        "events", ("id", "type", "at", "customer_id", "vehicle_id"), ("id", "type", "at"), events
    ),
}


# ---------------------------------------------------------------- reading


def file_stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read the file: {exc.strerror}") from None
    return st.st_size, st.st_mtime_ns


def changed_error(path: Path) -> ImportFileError:
    return ImportFileError(
        f"{path}: the file changed while it was being imported; nothing was stored. "
        f"Close it in other programs and import it again."
    )


def records(path: Path) -> Iterator[tuple[int, list[str]]]:
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
class Header:
    """Where each column is: known columns by name, extra columns, unnamed ones."""

    known: tuple[tuple[str, int], ...]
    extra: tuple[tuple[str, int], ...]
    unnamed: tuple[int, ...]
    width: int


def read_header(layout: Layout, cells: Sequence[str] | None, where: str) -> Header:
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
    return Header(tuple(known.items()), tuple(extra.items()), tuple(unnamed), len(cells))


# ---------------------------------------------------------------- parsing one row


@dataclass
class ParsedRow:
    """One row: what to store, which customer and vehicle it names, and what is wrong."""

    id: str
    record: Any = None
    customer_id: str = ""
    vehicle_id: str = ""
    problems: list[str] = field(default_factory=list)


class RowParser:
    """Turns the rows of one kind of file into records for crmd.intake.records."""

    def __init__(self, layout: Layout, site: Site, where: str) -> None:
        self.layout = layout
        self.where = where
        self.timezone: ZoneInfo = site.timezone
        self.event_types = frozenset(site.event_types)
        self._type_list = tuple(site.event_types)
        self.fields = site.fields
        # Extra columns with values that no declared field takes, with the event types of
        # their rows (the kind of record for customers and vehicles): warned of once.
        self._undeclared: dict[str, set[str]] = {}
        self.read_header: Header | None = None
        self._unknown: dict[str, str] = {}
        # Text columns and their widths (PostgreSQL enforces them; SQLite would not).
        self._widths = tuple(
            (name, width)
            for name in layout.columns
            if isinstance(width := getattr(layout.table.c[name].type, "length", None), int)
        )

    def parse(self, records: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, ParsedRow]]:
        """Each non-blank data row, parsed, with its row number."""
        header = read_header(self.layout, next(records, (1, None))[1], self.where)
        if self.read_header is None:
            self.read_header = header
        elif header != self.read_header:
            raise changed_error(Path(self.where))
        for row, cells in records:
            if not any(c.strip() for c in cells):
                continue  # a blank row, as spreadsheets leave at the end
            yield row, self._row(header, cells)

    def _row(self, header: Header, cells: list[str]) -> ParsedRow:
        width = len(cells)
        values = {name: cells[i].strip() if i < width else "" for name, i in header.known}
        extra: dict[str, Any] = {}
        for name, i in header.extra:
            if i < width and (text := cells[i].strip()):
                extra[name] = int(text) if _INT.fullmatch(text) else text
        parsed = ParsedRow(values["id"])
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
            self._declared(extra, self.fields.customer_extra, "customer")
            parsed.record = self._customer(values, extra, problems)
        elif kind == "vehicles":
            self._declared(extra, self.fields.vehicle_extra, "vehicle")
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
            # A mobile as E.164, a landline as written (crmd.intake.phones); kept as text.
            try:
                record["phone"] = customer_phone(values["phone"])
            except InvalidPhone as exc:
                problems.append(str(exc))
            values["phone"] = record["phone"]
        if "email" in values:
            try:
                record["email"] = customer_email(values["email"])
            except InvalidEmail as exc:
                problems.append(str(exc))
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
        else:
            declared = self.fields.event_type(type_)
            self._declared(extra, declared.fields, type_)
            for name in declared.required:
                if name not in extra:
                    problems.append(
                        f"{name} is empty; every {type_} event needs it (add a column "
                        f"{name!r} and fill it in on this row)"
                    )
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

    def _declared(self, extra: dict[str, Any], fields: Sequence[str], record: str) -> None:
        for name in extra:
            if name not in fields:
                self._undeclared.setdefault(name, set()).add(record)

    def warnings(self) -> list[str]:
        """One line for the file: the extra columns with values no rule may name."""
        if not self._undeclared:
            return []
        columns = "; ".join(
            f"{name!r} (no field of {', '.join(sorted(records))})"
            for name, records in sorted(self._undeclared.items())
        )
        key = "event_types" if self.layout.kind == "events" else f"{self.layout.kind[:-1]}_fields"
        return [
            f"{self.where}: columns a rule cannot name: {columns}. They are stored with the "
            f"{self.layout.kind}; to use them in rules, declare them under {key}: in "
            f"site.yaml, or check the header for a misspelling"
        ]

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
