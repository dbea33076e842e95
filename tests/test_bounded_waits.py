"""The suite cannot hang: every test has a time limit, and the tests' waits are bounded."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from crmd.testing import FakeSystemd


def test_every_test_has_a_time_limit(pytestconfig: pytest.Config) -> None:
    # pytest-timeout's default from pyproject.toml; a missing plugin or key fails here.
    assert 0 < float(pytestconfig.getini("timeout")) <= 600


@pytest.mark.timeout(20)
def test_waiting_for_a_message_that_never_comes_gives_up_despite_pings(tmp_path: Path) -> None:
    """A daemon that keeps pinging its watchdog but never says READY (the datagram was
    dropped) must not keep the test waiting: `until` gives up at its deadline."""
    systemd = FakeSystemd(str(tmp_path / "notify"), timeout=5)
    stop = threading.Event()

    def pings() -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            while not stop.wait(0.05):
                sock.sendto(b"WATCHDOG=1", systemd.address)

    pinger = threading.Thread(target=pings, daemon=True)
    pinger.start()
    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match=r"no READY from the daemon in 0\.5 s"):
            systemd.until("READY", timeout=0.5)
        assert time.monotonic() - started < 3
        # The socket's own time-out per message is as it was.
        assert systemd.sock.gettimeout() == 5
        assert systemd.until("WATCHDOG") == {"WATCHDOG": "1"}
    finally:
        stop.set()
        pinger.join(5)
        systemd.close()
