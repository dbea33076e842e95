"""How many rows the engine's next page of work takes.

Each page of fires is one transaction: on SQLite it holds the store's write lock from its
first write to its commit (imports, `crmd task` and the sender wait meanwhile, for up to
the store's busy timeout), and a daemon asked to stop finishes the page in flight first.
Large pages keep commits few, which is most of a catch-up's speed; but what a page costs
depends on the rule (a fan-out over every customer, conditions reading a customer's
history, long templates) and on the machine. So the size is measured, per rule: a page
that took longer than PAGE_SECONDS makes the next one smaller in proportion, a full page
that took less lets the next grow (at most GROWTH times, and never past the engine's
`page_size`). A rule's first page is FIRST_PAGE rows; sizes are remembered for the
engine's life, so a daemon learns each rule's pace once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from time import monotonic

from sqlalchemy import Connection

# How long one page's transaction should last, in seconds.
PAGE_SECONDS = 1.0
FIRST_PAGE = 1_000
LEAST_PAGE = 50
# A full, quick page lets the next be at most this many times larger.
GROWTH = 4


def _no_transaction() -> None:
    raise RuntimeError("this page has no transaction to commit")


@dataclass
class Page:
    """One page's transaction: its connection, the rows it may take, and those it took.

    `commit()` (set by the engine) commits what the page wrote so far and goes on in a new
    transaction, with a new connection and size, for work larger than a page.
    """

    conn: Connection
    size: int
    rows: int = 0
    commit: Callable[[], None] = field(default=_no_transaction)


class PageSizer:
    """Page sizes per key (a rule's id), from how long earlier pages took."""

    def __init__(
        self, seconds: float = PAGE_SECONDS, clock: Callable[[], float] = monotonic
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self._sizes: dict[str, int] = {}

    def size(self, key: str, most: int) -> int:
        """How many rows the next page for `key` takes: at least one, at most `most`."""
        return max(1, min(self._sizes.get(key, FIRST_PAGE), most))

    def observe(self, key: str, asked: int, rows: int, seconds: float, most: int) -> None:
        """Learn from a page that was allowed `asked` rows, took `rows` and lasted `seconds`."""
        if rows <= 0:
            return
        if seconds > self.seconds:
            # Too long: the size that would have fitted, at this page's pace.
            fitted = int(rows * self.seconds / seconds)
            self._sizes[key] = max(min(LEAST_PAGE, most), fitted)
        elif rows >= asked:
            # Full and quick: there is room for more (a partial page says nothing of it).
            fitting = rows * self.seconds / seconds if seconds > 0 else float("inf")
            self._sizes[key] = max(asked, int(min(fitting, asked * GROWTH, most)))
