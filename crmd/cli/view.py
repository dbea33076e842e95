"""How tasks and fires look to people (rich tables) and to scripts (JSON objects)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Row

from crmd.daemon.health import SiteSurvey
from crmd.engine.horizon import Stop
from crmd.engine.report import FireRecord, RuleTally
from crmd.engine.rule_errors import RuleFailure
from crmd.site import Site


def _console() -> Console:
    """A console that wraps to the terminal, or not at all when output goes to a pipe."""
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=240)
    return console


def _local(t: datetime | None, site: Site) -> str:
    return "" if t is None else t.astimezone(site.timezone).strftime("%Y-%m-%d %H:%M")


def _iso(t: datetime | None, site: Site) -> str | None:
    return None if t is None else t.astimezone(site.timezone).isoformat()


def is_overdue(task: Row[Any], now: datetime) -> bool:
    return bool(task.status == "open" and (task.overdue or task.due_at <= now))


def task_json(task: Row[Any], now: datetime, site: Site) -> dict[str, Any]:
    return {
        "id": task.id,
        "rule": task.rule_id,
        "role": task.role,
        "title": task.title,
        "note": task.note,
        "customer_id": task.customer_id,
        "vehicle_id": task.vehicle_id,
        "available_at": _iso(task.available_at, site),
        "due_at": _iso(task.due_at, site),
        "status": task.status,
        "overdue": is_overdue(task, now),
        "attempts": task.attempts,
        "outcome": task.outcome,
        "score": task.score,
        "closed_at": _iso(task.closed_at, site),
        "warning": task.warning,
    }


def tasks_table(rows: Sequence[Row[Any]], now: datetime, site: Site) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "due", "role", "title", "customer", "rule", "status"):
        table.add_column(column)
    for t in rows:
        status = t.status
        if is_overdue(t, now):
            status = "[bold red]OVERDUE[/]"
        elif t.attempts:
            status = f"{t.status} ({t.attempts} attempt{'s' if t.attempts > 1 else ''})"
        title = escape(t.title)
        if t.warning:
            title += f"\n[yellow]⚠ {escape(t.warning)}[/]"
        table.add_row(
            str(t.id),
            _local(t.due_at, site),
            t.role,
            title,
            t.customer_id or "",
            t.rule_id,
            status,
        )
    _console().print(table)


def fire_json(f: FireRecord, site: Site) -> dict[str, Any]:
    return {
        "rule": f.rule_id,
        "key": f.key,
        "subject": f.subject,
        "customer_id": f.customer_id,
        "vehicle_id": f.vehicle_id,
        "fire_at": _iso(f.fire_at, site),
        "status": f.status,
        "late": f.late,
        "reason": f.reason,
        "warnings": f.warnings,
        "actions": [
            {k: (_iso(v, site) if isinstance(v, datetime) else v) for k, v in a.items()}
            for a in f.actions
        ],
    }


def describe_action(a: dict[str, Any], site: Site) -> str:
    kind = a["action"]
    if kind == "task":
        if a.get("skipped"):
            return f"task {a['role']} not made: {a['skipped']}"
        return f"task {a['role']}: {a['title']} (due {_local(a['due_at'], site)})"
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
            _local(tally.first, site),
            _local(tally.last, site),
            ", ".join(f"{n} {what}" for what, n in tally.does.items()),
        )
    _console().print(table)


def _fire_cells(f: FireRecord, site: Site) -> tuple[str, str, str, str, str]:
    status = f.status + (" (late)" if f.late else "")
    does = "; ".join(describe_action(a, site) for a in f.actions) or f.reason
    if f.warnings:
        does += " ⚠ " + "; ".join(f.warnings)
    return _local(f.fire_at, site), f.rule_id, f.subject, status, does


def plan_stops(stops: Mapping[str, Stop], site: Site) -> list[str]:
    """A plan's rules that stopped at a calendar year not known: one line each, then why."""
    lines = [
        f"stop: rule {rule_id} at {_local(stop.at, site)}: its fires before then are listed; "
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
        since = _local(min(f.since for f in these), site)
        last = _local(max(f.last for f in these), site)
        rules = f"rule {ids}" if len(these) == 1 else f"{len(these)} rules ({ids})"
        lines.append(f"failing: {rules} since {since}, last at {last}: {error}")
    return lines


def fires_table(fires: Sequence[FireRecord], site: Site) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("fire time", "rule", "subject", "status", "does"):
        table.add_column(column)
    for f in sorted(fires, key=lambda f: (f.fire_at, f.rule_id, f.subject)):
        table.add_row(*_fire_cells(f, site))
    _console().print(table)


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
                    "at": _iso(stop.at, self.site),
                    "year": stop.year,
                    "reason": stop.reason,
                }
                for rule_id, stop in stops.items()
            ]
        self.write("\n], " + json.dumps(tail, ensure_ascii=False)[1:])


def message_json(m: Row[Any], site: Site) -> dict[str, Any]:
    """One outbox message for scripts; the recipient is shown in full (the operator's view)."""
    return {
        "id": m.id,
        "channel": m.channel,
        "rule": m.rule_id,
        "customer_id": m.customer_id,
        "recipient": m.recipient,
        "subject": m.subject,
        "body": m.body,
        "status": m.status,
        "attempts": m.attempts,
        "next_attempt_at": _iso(m.next_attempt_at, site) if m.status == "queued" else None,
        "sent_at": _iso(m.sent_at, site),
        "provider_ref": m.provider_ref,
        "last_error": m.last_error,
        "created_at": _iso(m.created_at, site),
    }


def outbox_table(rows: Sequence[Row[Any]], site: Site) -> None:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "channel", "to", "status", "when", "text", "note"):
        table.add_column(column)
    for m in rows:
        when = m.sent_at if m.status == "sent" else m.next_attempt_at
        text = m.subject or m.body
        status = m.status + (f" ({m.attempts})" if m.attempts > 1 else "")
        table.add_row(
            str(m.id),
            m.channel,
            m.recipient,
            status,
            _local(when, site),
            text if len(text) <= 40 else text[:39] + "…",
            m.last_error or "",
        )
    _console().print(table)


def sites_table(rows: Sequence[SiteSurvey]) -> None:
    """One line per site of a directory of sites (`crmd sites`), times in each site's zone."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("site", "name", "schema", "daemon", "last tick", "open", "overdue", "held"):
        table.add_column(column)
    table.add_column("dead")
    table.add_column("failed fires")
    table.add_column("note")
    for row in rows:
        h = row.health
        if h is None:
            table.add_row(
                row.directory, row.name, row.schema or "", row.state, *[""] * 6, row.error
            )
            continue
        daemons = f"{len(h.running)} running" if len(h.running) > 1 else row.state
        last = h.last_tick
        table.add_row(
            row.directory,
            row.name,
            row.schema or "",
            daemons,
            "" if last is None else f"{last.astimezone(row.timezone):%Y-%m-%d %H:%M}",
            str(h.counts["open_tasks"]),
            str(h.counts["overdue_tasks"]),
            str(h.counts["held_messages"]),
            str(h.counts["dead_messages"]),
            str(h.counts["failed_fires"]),
            (h.beat.last_error if h.beat is not None else None) or "",
        )
    _console().print(table)


def ledger_json(f: Row[Any], site: Site) -> dict[str, Any]:
    """One row of the fires ledger for scripts (`crmd fires --json`)."""
    detail = f.detail or {}
    return {
        "id": f.id,
        "rule": f.rule_id,
        "key": f.key,
        "subject": f.subject,
        "customer_id": f.customer_id,
        "vehicle_id": f.vehicle_id,
        "fire_at": _iso(f.fire_at, site),
        "recorded_at": _iso(f.recorded_at, site),
        "status": f.status,
        "late": f.late,
        "reason": detail.get("reason", ""),
        "warnings": detail.get("warnings", []),
        "dismissed": detail.get("dismissed"),
    }


def ledger_table(rows: Sequence[Row[Any]], site: Site) -> None:
    """Rows of the fires ledger (`crmd fires`): what happened, or why it could not."""
    table = Table(show_edge=False, pad_edge=False)
    for column in ("id", "fire time", "rule", "customer", "status", "tried", "reason"):
        table.add_column(column)
    for f in rows:
        detail = f.detail or {}
        reason = detail.get("reason", "")
        if detail.get("dismissed"):
            d = detail["dismissed"]
            reason = f"dismissed by {d['by']}: {d['reason']} (was: {reason})"
        status = f.status + (" (late)" if f.late else "")
        if f.status == "failed":
            status = f"[bold red]{status}[/]"
        table.add_row(
            str(f.id),
            _local(f.fire_at, site),
            f.rule_id,
            f.customer_id or f.subject,
            status,
            _local(f.recorded_at, site),
            escape(reason),
        )
    _console().print(table)
