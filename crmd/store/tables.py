"""The store's tables (SQLAlchemy Core). Migrations in crmd/store/migrations must match them.

Times are stored in UTC (UTCDateTime) and evaluated in the site's zone.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

# Integer primary keys autoincrement as ROWID on SQLite and BIGSERIAL-like on PostgreSQL.
Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as naive UTC; naive input is a bug and is refused."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; use aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        parsed: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


customers = Table(
    "customers",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("phone", String(32), nullable=False, default=""),
    Column("email", String(254), nullable=False, default=""),
    Column("birthday", Date),
    # month * 100 + day of the birthday: lets the annual trigger find a day's birthdays by index.
    Column("birthday_md", Integer),
    Column("member", Boolean, nullable=False, default=False),
    Column("opt_out", Boolean, nullable=False, default=False),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "birthday_md"),
)

vehicles = Table(
    "vehicles",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("vin", String(32), nullable=False, default=""),
    Column("plate", String(32), nullable=False, default=""),
    Column("model", String(100), nullable=False, default=""),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "customer_id"),
)


def _where(condition_text: str) -> dict[str, Any]:
    """A partial index's condition, for SQLite and PostgreSQL."""
    condition = text(condition_text)
    return {"sqlite_where": condition, "postgresql_where": condition}


def _where_not_null(column: str) -> dict[str, Any]:
    """A partial index's condition: rows where `column` is set."""
    return _where(f"{column} IS NOT NULL")


# Every fact, in arrival order (seq). `id` is the caller's identifier, so re-importing the
# same event changes nothing.
events = Table(
    "events",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("customer_id", String(64)),
    Column("vehicle_id", String(64)),
    Column("task_id", BigInteger),
    Column("data", JSON, nullable=False, default=dict),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index(None, "type", "at"),
    # Newly arrived events of a type (late arrivals, counting) by arrival order.
    Index(None, "type", "seq"),
    Index(None, "customer_id", "type", "at"),
    # Events are looked up by vehicle and by task only for a given one: these two indexes
    # leave out the events without (every event but a task's has no task), which saves
    # their index entries on each import and fire.
    Index(None, "vehicle_id", "type", "at", **_where_not_null("vehicle_id")),
    Index(None, "task_id", **_where_not_null("task_id")),
)

# Per-rule evaluation state: fires up to `watermark` are done; events up to `event_seq`
# have been looked at for late arrivals and counting.
rule_state = Table(
    "rule_state",
    metadata,
    Column("rule_id", String(100), primary_key=True),
    Column("since", UTCDateTime, nullable=False),
    Column("watermark", UTCDateTime, nullable=False),
    Column("event_seq", BigInteger, nullable=False, default=0),
    Column("updated_at", UTCDateTime, nullable=False),
    # The schedule as last evaluated; when a reload changes it, today is walked again.
    Column("trigger", String(300), nullable=False, default="", server_default=""),
    # The rule's last error while it fails (say, a calendar year not published), since when
    # it has failed and when it last did; all NULL once it succeeds (crmd.engine.rule_errors).
    Column("last_error", Text),
    Column("failing_since", UTCDateTime),
    Column("last_failed_at", UTCDateTime),
)

# The fires ledger: one row per rule firing for one subject and occurrence, keyed so that
# it can happen only once.
fires = Table(
    "fires",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(300), nullable=False, unique=True),
    Column("rule_id", String(100), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("customer_id", String(64)),
    Column("vehicle_id", String(64)),
    Column("event_seq", BigInteger),
    Column("fire_at", UTCDateTime, nullable=False),
    Column("recorded_at", UTCDateTime, nullable=False),
    # fired | cancelled | skipped (too late, see `late: skip_after`) | failed (could not be
    # done: kept, shown and retried; crmd/store/ledger.py) | dismissed (a failed fire closed
    # by hand)
    Column("status", String(16), nullable=False),
    Column("late", Boolean, nullable=False, default=False),
    Column("detail", JSON, nullable=False, default=dict),
    Index(None, "rule_id", "fire_at"),
    # The failed fires only: every tick looks for them to retry, `crmd status` counts them.
    Index(None, "status", **_where("status = 'failed'")),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fire_id", BigInteger),
    Column("rule_id", String(100), nullable=False),
    Column("role", String(64), nullable=False),
    Column("title", Text, nullable=False),
    Column("note", Text, nullable=False, default=""),
    Column("customer_id", String(64)),
    Column("vehicle_id", String(64)),
    Column("available_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("status", String(16), nullable=False),  # open | done | cancelled
    Column("overdue", Boolean, nullable=False, default=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("outcome", String(32)),
    Column("score", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime),
    Column("closed_note", Text),
    # What the person doing the task should know: data that was missing when it was made
    # (shown as a placeholder in its title), or how late it was made.
    Column("warning", Text),
    Index(None, "status", "overdue", "due_at"),
    Index(None, "status", "available_at"),
    Index(None, "rule_id", "customer_id", "status"),
)

# Messages to send; delivery is the channels' work (crmd/channels/sender.py). One message per fire,
# channel and recipient, however often the rule is evaluated.
# status: queued -> sending -> sent, or back to queued (retry), dead (gave up), held (a person
# must look) or cancelled. "sending" is committed before the provider is called, so a crash
# mid-send leaves a visible mark that is reconciled, never blindly re-sent.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("fire_id", BigInteger, nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("channel", String(32), nullable=False),
    Column("customer_id", String(64)),
    Column("recipient", String(254), nullable=False),
    Column("subject", Text, nullable=False, default=""),
    Column("body", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("not_before", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("provider_ref", String(100)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    # When the sender may next try it: not_before at first, later after a backoff or the
    # end of quiet hours.
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # Whether it goes to the customer (quiet hours and opt-out apply) or to staff.
    Column("to_customer", Boolean, nullable=False, default=True),
    Column("claimed_at", UTCDateTime),
    Column("claim_token", String(32)),
    UniqueConstraint("fire_id", "channel", "recipient"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "channel", "sent_at"),
)

# Dates that `set` actions store on a customer or vehicle, watched by date triggers
# (P12: when the next maintenance is due). Indexed by field and date, so a tick finds the
# dates falling due in its window without reading the others.
dates = Table(
    "dates",
    metadata,
    Column("scope", String(16), primary_key=True),  # customer | vehicle
    Column("subject_id", String(64), primary_key=True),
    Column("field", String(64), primary_key=True),
    Column("value", Date, nullable=False),
    Column("customer_id", String(64)),
    Column("set_at", UTCDateTime, nullable=False),
    Column("set_by", String(300), nullable=False, default=""),
    Index(None, "field", "value"),
)

# One row per daemon (host and site): what `crmd status` reports. Written at start, after
# every tick and at stop; `last_tick_at` is the `now` the last tick evaluated.
daemon = Table(
    "daemon",
    metadata,
    Column("id", String(300), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # running | stopped
    Column("started_at", UTCDateTime, nullable=False),
    Column("last_tick_at", UTCDateTime),
    Column("last_tick_seconds", Float),
    Column("rules", Integer, nullable=False),
    Column("last_error", Text),
    Column("updated_at", UTCDateTime, nullable=False),
)
