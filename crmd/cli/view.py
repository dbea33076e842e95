"""How outbox messages, sites and the fires ledger look to people (rich tables) and to
scripts (JSON objects); and the rich console every table of crmd prints to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crmd.cli.columns import iso_time, local_time

if TYPE_CHECKING:
    from sqlalchemy import Row

    from crmd.daemon.health import SiteSurvey
    from crmd.site import Site


def console() -> Console:
    """A console that wraps to the terminal, or not at all when output goes to a pipe."""
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=240)
    return console


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
        "next_attempt_at": iso_time(m.next_attempt_at, site) if m.status == "queued" else None,
        "sent_at": iso_time(m.sent_at, site),
        "provider_ref": m.provider_ref,
        "last_error": m.last_error,
        "created_at": iso_time(m.created_at, site),
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
            local_time(when, site),
            text if len(text) <= 40 else text[:39] + "…",
            m.last_error or "",
        )
    console().print(table)


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
    console().print(table)


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
        "fire_at": iso_time(f.fire_at, site),
        "recorded_at": iso_time(f.recorded_at, site),
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
            local_time(f.fire_at, site),
            f.rule_id,
            f.customer_id or f.subject,
            status,
            local_time(f.recorded_at, site),
            escape(reason),
        )
    console().print(table)
