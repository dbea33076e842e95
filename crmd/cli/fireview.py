"""How fires look: a tick's or plan's fires as rich tables, one line each for long plans
(kept in time order on disk), or streamed as JSON; and the rules failing on every tick."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.table import Table

from crmd.cli.columns import iso_time, local_time
from crmd.cli.view import console

if TYPE_CHECKING:
    from crmd.engine.horizon import Stop
    from crmd.engine.report import FireRecord, RuleTally
    from crmd.engine.rule_errors import RuleFailure
    from crmd.site import Site


def fire_json(f: FireRecord, site: Site) -> dict[str, Any]:
    return {
        "rule": f.rule_id,
        "key": f.key,
        "subject": f.subject,
        "customer_id": f.customer_id,
        "vehicle_id": f.vehicle_id,
        "fire_at": iso_time(f.fire_at, site),
        "status": f.status,
        "late": f.late,
        "reason": f.reason,
        "warnings": f.warnings,
        "actions": [
            {k: (iso_time(v, site) if isinstance(v, datetime) else v) for k, v in a.items()}
            for a in f.actions
        ],
    }


def describe_action(a: dict[str, Any], site: Site) -> str:
    kind = a["action"]
    if kind == "task":
        if a.get("skipped"):
            return f"task {a['role']} not made: {a['skipped']}"
        return f"task {a['role']}: {a['title']} (due {local_time(a['due_at'], site)})"
    if kind in ("sms", "email"):
        text = a["text"] if kind == "sms" else a["subject"]
        if a.get("skipped"):
            return f"{kind} not sent: {a['skipped']}"
        return f"{kind} to {a['to']}: {text}"
    if kind in ("cancel", "complete"):
        verb = "cancel" if kind == "cancel" else "close as done"
        return f"{verb} open tasks of {', '.join(a['rules']) or '(no rule matched)'}"
    if kind == "set":
        limit = f" or {a['km']} km" if a.get("km") else ""
        return f"set {a['field']} to {a['after']}{limit} ahead"
    if kind == "emit":
        data = ", ".join(f"{k}={v}" for k, v in a["data"].items())
        return f"record event {a['event']}" + (f" ({data})" if data else "")
    raise ValueError(f"unknown action {kind!r}")


def plan_summary_table(
    tallies: Mapping[str, RuleTally], descriptions: Mapping[str, str], site: Site
) -> None:
    """One line per rule: how often it fires in the window, when first and last, for whom."""
    table = Table(title="by rule", show_edge=False, pad_edge=False)
    for column in ("rule", "policy", "fires", "first", "last", "does"):
        table.add_column(column)
    for rule_id, tally in sorted(tallies.items(), key=lambda item: (item[1].first, item[0])):
        fired = tally.statuses.get("fired", 0)
        count = str(fired)
        if tally.total > fired:
            count += f" (+{tally.total - fired} cancelled or skipped)"
        table.add_row(
            rule_id,
            descriptions.get(rule_id, ""),
            count,
            local_time(tally.first, site),
            local_time(tally.last, site),
            ", ".join(f"{n} {what}" for what, n in tally.does.items()),
        )
    console().print(table)


def _fire_cells(f: FireRecord, site: Site) -> tuple[str, str, str, str, str]:
    status = f.status + (" (late)" if f.late else "")
    does = "; ".join(describe_action(a, site) for a in f.actions) or f.reason
    if f.warnings:
        does += " ⚠ " + "; ".join(f.warnings)
    return local_time(f.fire_at, site), f.rule_id, f.subject, status, does


def plan_stops(stops: Mapping[str, Stop], site: Site) -> list[str]:
    """A plan's rules that stopped at a calendar year not known: one line each, then why."""
    lines = [
        f"stop: rule {rule_id} at {local_time(stop.at, site)}: its fires before then are listed; "
        f"from then it needs the {stop.year} calendar"
        for rule_id, stop in sorted(stops.items(), key=lambda item: (item[1].at, item[0]))
    ]
    for reason in sorted({stop.reason for stop in stops.values()}):
        lines.append(f"stop: {reason}")
    return lines


def failing_lines(failing: Sequence[RuleFailure], site: Site) -> list[str]:
    """Rules failing on every tick, for `crmd status`: one line per distinct error."""
    by_error: dict[str, list[RuleFailure]] = {}
    for f in failing:
        by_error.setdefault(f.error, []).append(f)
    lines = []
    for error, these in by_error.items():
        ids = ", ".join(sorted(f.rule_id for f in these))
        since = local_time(min(f.since for f in these), site)
        last = local_time(max(f.last for f in these), site)
        rules = f"rule {ids}" if len(these) == 1 else f"{len(these)} rules ({ids})"
        lines.append(f"failing: {rules} since {since}, last at {last}: {error}")
    return lines


def fires_table(fires: Sequence[FireRecord], site: Site) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("fire time", "rule", "subject", "status", "does"):
        table.add_column(column)
    for f in sorted(fires, key=lambda f: (f.fire_at, f.rule_id, f.subject)):
        table.add_row(*_fire_cells(f, site))
    console().print(table)


def fire_line(f: FireRecord, site: Site) -> str:
    """One fire on one line, for long listings (`crmd plan`)."""
    return "  ".join(_fire_cells(f, site))


class LinesByTime:
    """Lines held on disk and given back by time (then in the order they came), so a
    month's plan is listed in time order without holding it in memory.

    The engine works rule by rule, each rule's fires in time order; a listing by time needs
    all of them first. Each fire's line is made as the fire is, and waits in a private
    temporary SQLite database (removed when closed) until the listing.
    """

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # "": a temporary database on disk, private to us
        self._db.execute("CREATE TABLE line (at TEXT NOT NULL, text TEXT NOT NULL)")
        self._pending: list[tuple[str, str]] = []

    def add(self, at: datetime, text: str) -> None:
        # Fixed-width UTC text (microseconds always written): sorted as text, sorted in time.
        self._pending.append((at.astimezone(UTC).isoformat(timespec="microseconds"), text))
        if len(self._pending) >= 1000:
            self._flush()

    def _flush(self) -> None:
        self._db.executemany("INSERT INTO line VALUES (?, ?)", self._pending)
        self._pending = []

    def __iter__(self) -> Iterator[str]:
        self._flush()
        for (text,) in self._db.execute("SELECT text FROM line ORDER BY at, rowid"):
            yield text

    def close(self) -> None:
        self._db.close()


class FireJsonStream:
    """The `--json` report of a tick or plan, written fire by fire.

    The document is one object, {"now", "fires", "overdue", "overdue_count", "errors"}, with
    one fire per line; the whole list is never held, so a month's plan needs no more memory
    than a day's.
    """

    def __init__(self, now: datetime, site: Site, write: Callable[[str], None]) -> None:
        self.site = site
        self.write = write
        self.written = 0
        write('{"now": ' + json.dumps(now.isoformat()) + ', "fires": [')

    def __call__(self, f: FireRecord) -> None:
        self.put(self.render(f))

    def render(self, f: FireRecord) -> str:
        """One fire's line of the document."""
        return json.dumps(fire_json(f, self.site), ensure_ascii=False, default=str)

    def put(self, line: str) -> None:
        """Write one fire's line, made by `render`."""
        self.write(("," if self.written else "") + "\n  " + line)
        self.written += 1

    def close(
        self,
        overdue: Sequence[int],
        overdue_count: int,
        errors: Sequence[str],
        stops: Mapping[str, Stop] | None = None,
    ) -> None:
        """`overdue` lists the first ids (a bounded sample), `overdue_count` counts them all;
        `stops` (a plan's) says where rules stopped at a calendar year not known."""
        tail: dict[str, Any] = {
            "overdue": list(overdue),
            "overdue_count": overdue_count,
            "errors": list(errors),
        }
        if stops is not None:
            tail["stops"] = [
                {
                    "rule": rule_id,
                    "at": iso_time(stop.at, self.site),
                    "year": stop.year,
                    "reason": stop.reason,
                }
                for rule_id, stop in stops.items()
            ]
        self.write("\n], " + json.dumps(tail, ensure_ascii=False)[1:])
