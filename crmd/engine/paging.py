"""The engine's pages of work: how many rows the next page takes, and the transaction it runs in.

Each page of fires is one transaction: on SQLite it holds the store's write lock from its
first write to its commit (imports, `crmd task` and the sender wait meanwhile, for up to
the store's busy timeout), and a daemon asked to stop finishes the page in flight first.
Large pages keep commits few, which is most of a catch-up's speed; but what a page costs
depends on the rule (a fan-out over every customer, conditions reading a customer's
history, long templates) and on the machine. So the size is measured, per rule: a page
that took longer than PAGE_SECONDS makes the next one smaller in proportion, a full page
that took less lets the next grow (at most GROWTH times, and never past the engine's
`page_size`). A rule's first page is FIRST_PAGE rows; sizes are remembered for the
engine's life, so a daemon learns each rule's pace once. The fires a page writes are
reported only once its transaction has committed: one rolled back did not happen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from time import monotonic

from sqlalchemy import Connection

from crmd.engine.report import FireRecord
from crmd.store.database import Unit
from crmd.store.gcpause import collector_paused

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
    """One page's transaction: its connection, the rows it may take, those it took, and the
    fires it wrote (reported when it commits).

    `commit()` (set by `page_transaction`) commits what the page wrote so far and goes on in
    a new transaction, with a new connection and size, for work larger than a page.
    """

    conn: Connection
    size: int
    rows: int = 0
    commit: Callable[[], None] = field(default=_no_transaction)
    fires: list[FireRecord] = field(default_factory=list)


# A new page of one key's work (a rule's id), in a transaction of its own.
OpenPage = Callable[[], AbstractContextManager[Page]]


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


@contextmanager
def page_transaction(
    unit: Unit,
    sizer: PageSizer,
    most: int,
    key: str,
    committed: Callable[[list[FireRecord]], None],
) -> Iterator[Page]:
    """One page's transaction; `committed` gets the page's fires once it has committed.

    The caller takes at most `page.size` rows, says in `page.rows` how many it took and adds
    the fires it wrote to `page.fires`; how long the transaction lasted sizes the next page
    for `key`, at most `most` rows. Work larger than a page calls `page.commit()` between its
    parts: each part is a transaction of its own, sized and reported the same way. A page
    that raises rolls back, and its fires are never reported.
    """
    with ExitStack() as stack:
        started = 0.0

        def begin() -> Page:
            nonlocal started
            size = sizer.size(key, most)
            started = sizer.clock()
            stack.enter_context(collector_paused())
            return Page(stack.enter_context(unit.batch()), size)

        def end(txn: Page) -> None:
            stack.close()  # the transaction commits, the garbage collector resumes
            took = sizer.clock() - started
            sizer.observe(key, txn.size, txn.rows, took, most)
            fires, txn.fires = txn.fires, []
            committed(fires)

        txn = begin()

        def commit() -> None:
            end(txn)
            fresh = begin()
            txn.conn, txn.size, txn.rows = fresh.conn, fresh.size, 0

        txn.commit = commit
        yield txn
        end(txn)
