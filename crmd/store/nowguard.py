"""Writing commands may not go back in time: `--now` earlier than the store's last tick.

`--now` pins the clock for audits, tests and what-ifs. A writing command (`tick`, `import`,
`event`, `task`, `run`) at an instant before the one the store has already been evaluated
up to would commit into the real store as of a past that its rules have already passed:
events recorded "before" fires that did not see them, attempts dated before the tasks'
last tick. Someone trying a what-if would move the real store. Such a command is refused,
and pointed at `crmd plan`, which evaluates the same way and writes nothing. Reading
commands and `plan` are never refused, and neither is a first use (an empty store).
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlalchemy import Connection, func, select

from crmd.errors import CrmdError
from crmd.store.tables import daemon, rule_state


class PastNow(CrmdError):
    """A writing command's --now lies before the store's last tick."""


def evaluated_up_to(conn: Connection) -> datetime | None:
    """The instant the store has been evaluated up to: the latest rule watermark (a tick at
    T brings every rule's to T; they never go back) or a daemon's last tick, whichever is
    later. None for a store that was never ticked."""
    latest: list[datetime] = [
        value
        for value in (
            conn.execute(select(func.max(rule_state.c.watermark))).scalar_one(),
            conn.execute(select(func.max(daemon.c.last_tick_at))).scalar_one(),
        )
        if value is not None
    ]
    return max(latest) if latest else None


def refuse_going_back(conn: Connection, now: datetime, zone: tzinfo, command: str) -> None:
    """Raise PastNow if `now` is earlier than the store's last tick."""
    last = evaluated_up_to(conn)
    if last is None or now >= last:
        return
    when = f"{now.astimezone(zone):%Y-%m-%dT%H:%M:%S}"
    raise PastNow(
        f"--now {when} is before {last.astimezone(zone):%Y-%m-%d %H:%M:%S}, the time this "
        f"store has been evaluated up to (its last tick); `{command}` would write into "
        f"the real store as of a time its rules have already passed, so nothing was done. "
        f"For a what-if, `crmd --now {when} plan` evaluates the same way and writes "
        f"nothing; to record what happened then, give the real time (or a --now after the "
        f"last tick) and the event's own time with --at."
    )
