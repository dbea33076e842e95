"""How the store's queries read many rows: a page's size, keyset cursors, and ids in chunks.

Every query that may meet more rows than fit in memory reads one page at a time, each page
starting after the last row of the one before (a keyset scan on an index). A query for a
list of ids asks for them a chunk at a time, within what the database takes in one statement.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Connection, and_, any_, bindparam

# The most rows a page reads (events, dates, customers), its fires committing together, so
# memory stays bounded whatever the size of the store. A larger page rewrites the
# customer-led index pages fewer times in a catch-up (2,000 made commits take 2.4 times as
# long at 100k fires); a smaller one holds SQLite's write lock for less and redoes less
# after a crash: the engine sizes each rule's pages below this by time (crmd.engine.paging).
PAGE = 10_000


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def members(
    conn: Connection, column: ColumnElement[Any], values: Sequence[Any]
) -> Iterator[ColumnElement[bool]]:
    """`column IN values` as conditions over chunks of the values, one statement each.

    On PostgreSQL a chunk is one array parameter (`column = ANY(:values)`) of up to 10,000
    values: the statement's text stays the same whatever the count, and neither SQLAlchemy
    nor the driver renders and parses a parameter per value (for a page of fires that was
    a tenth of the tick). Elsewhere, IN lists of 500 (SQLite caps a statement's parameters).
    """
    if conn.dialect.name == "postgresql":
        for chunk in _chunks(values, 10_000):
            yield column == any_(bindparam(None, list(chunk), type_=ARRAY(column.type)))
    else:
        for chunk in _chunks(values):
            yield column.in_(chunk)


def past_cursor(
    at: ColumnElement[Any], tiebreak: ColumnElement[Any], cursor: tuple[Any, Any]
) -> ColumnElement[bool]:
    """Rows after `cursor` in (at, tiebreak) order, the next page of a keyset scan.

    `at >= last` lets an index range start at the cursor; the OR alone made each page scan
    the window from its beginning again.
    """
    last_at, last_tiebreak = cursor
    return and_(at >= last_at, (at > last_at) | (tiebreak > last_tiebreak))
