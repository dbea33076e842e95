"""Pausing Python's cyclic garbage collector while a page of fires is built and written.

A page of 10,000 fires makes a few hundred thousand short-lived dicts, rows and records.
CPython's collector counts allocations and, as they pile up, walks every tracked object of
the process again and again (the rules, SQLAlchemy's and Jinja's caches, the page itself)
looking for reference cycles; the page makes none that outlive it, and reference counting
frees everything it drops. Pausing the collector for the page cut a 100k-fire catch-up by
about a third (bench/vs_apscheduler.py), the collector's walks being that much of it.

The collector is process-wide and a group process (crmd.group) runs pages on several
threads, so pauses are counted: it is switched off by the first page to start and back on
by the last to end, and only if it was on to begin with (a caller that turned it off
itself keeps it off). Any cycle made during a page is collected after it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0
_was_enabled = False


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the body with the cyclic collector off (nested and threaded uses are counted)."""
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
