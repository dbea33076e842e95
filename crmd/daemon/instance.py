"""One daemon per store: an exclusive lock file held for the daemon's whole life.

The lock is `fcntl.flock` on `<store file>.lock` next to a SQLite store (for another store,
`store/crmd.lock` in the site). The kernel releases it when the process dies, however it
dies, so a kill -9 never leaves a stale lock. The file holds the holder's PID, for
`crmd reload` and `crmd status`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sqlalchemy.engine import make_url

from crmd.errors import CrmdError
from crmd.site import Site


class AlreadyRunning(CrmdError):
    """Another daemon holds the store's lock."""


def lock_path(site: Site) -> Path:
    """Where the lock file of the site's store lives."""
    url = make_url(site.store_url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        return Path(database).with_name(Path(database).name + ".lock")
    return site.store_dir / "crmd.lock"


class InstanceLock:
    """The store's lock file; `acquire` raises AlreadyRunning if another process has it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_pid(self.path)
            who = f" (PID {holder})" if holder else ""
            raise AlreadyRunning(
                f"another crmd daemon{who} is already running on this store; it holds "
                f"{self.path}. Stop it first (or use `crmd reload` to make it re-read the "
                f"rules)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock; the file stays, harmless
            self._fd = None


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def running_pid(site: Site) -> int | None:
    """The PID of the daemon holding the site store's lock, or None if none is running."""
    path = lock_path(site)
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(path) or -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
