"""Pausing Python's cyclic garbage collector while a page of fires is built and written.

A page of 10,000 fires makes a few hundred thousand short-lived dicts, rows and records.
CPython's collector counts allocations and, as they pile up, walks every tracked object of
the process again and again (the rules, SQLAlchemy's and Jinja's caches, the page itself)
looking for reference cycles; the page makes none that outlive it, and reference counting
frees everything it drops. Pausing the collector for the page cut a 100k-fire catch-up by
a quarter to a third (bench/vs_apscheduler.py), the collector's walks being that much of it.

The collector is process-wide and a group process (crmd.daemon.group) runs pages on several
threads, so pauses are counted: it is switched off by the first page to start and back on
by the last to end, and only if it was on to begin with (a caller that turned it off
itself keeps it off). Any cycle made during a page is collected after it. Where pages of
several sites overlap without a break, a page that ends while others run collects once if
the collector has been off for more than MAX_PAUSE_S, so it is never off for good.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import monotonic

# The longest the collector stays off while pages keep overlapping, in seconds.
MAX_PAUSE_S = 60.0

_lock = threading.Lock()
_pauses = 0
_was_enabled = False
_off_since = 0.0


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the body with the cyclic collector off (nested and threaded uses are counted)."""
    global _pauses, _was_enabled, _off_since
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            _off_since = monotonic()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        collect = False
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
            elif _pauses and _was_enabled and monotonic() - _off_since >= MAX_PAUSE_S:
                _off_since = monotonic()
                collect = True
        if collect:
            gc.collect()  # outside the lock: other pages may start and end meanwhile
