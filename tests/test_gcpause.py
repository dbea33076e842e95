"""The collector pause around pages of fires: counted, thread-safe, and it restores what was."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from crmd.store import gcpause
from crmd.store.gcpause import collector_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def test_the_collector_is_off_inside_and_on_again_after() -> None:
    with collector_paused():
        assert not gc.isenabled()
        with collector_paused():  # nested: the inner end does not switch it back on
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_still_switches_it_back_on() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("page failed")
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_caller_stays_off() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_pages_on_two_threads_keep_it_off_until_both_end() -> None:
    first_in, first_may_end, first_done = (threading.Event() for _ in range(3))
    seen: dict[str, bool] = {}

    def first() -> None:
        with collector_paused():
            first_in.set()
            first_may_end.wait(10)
        first_done.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with collector_paused():
        first_may_end.set()  # the first page ends while this one runs
        assert first_done.wait(10)
        seen["after the first ended"] = gc.isenabled()
    thread.join(10)
    assert seen == {"after the first ended": False}
    assert gc.isenabled()


def test_a_decorated_function_runs_with_it_off() -> None:
    @collector_paused()
    def work() -> bool:
        return gc.isenabled()

    assert work() is False
    assert gc.isenabled()


@pytest.fixture
def collections() -> Iterator[list[str]]:
    """One "start" per run of the collector while the test runs."""
    started: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started.append(phase)

    gc.callbacks.append(seen)
    yield started
    gc.callbacks.remove(seen)


def test_overlapping_pages_still_collect_once_the_pause_grows_long(
    monkeypatch: pytest.MonkeyPatch, collections: list[str]
) -> None:
    # Sites of a group process whose pages overlap without a break never bring the count to
    # zero: a page ending after MAX_PAUSE_S collects anyway, and the collector stays off.
    monkeypatch.setattr(gcpause, "MAX_PAUSE_S", 3600.0)
    with collector_paused():
        collections.clear()  # from here on the collector runs only if the pause runs it
        with collector_paused():
            pass
        assert collections == []  # not yet long enough
        monkeypatch.setattr(gcpause, "MAX_PAUSE_S", 0.0)
        with collector_paused():
            pass
        assert collections == ["start"]
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_off_for_good_is_not_collected_by_the_pause(
    monkeypatch: pytest.MonkeyPatch, collections: list[str]
) -> None:
    monkeypatch.setattr(gcpause, "MAX_PAUSE_S", 0.0)
    gc.disable()
    collections.clear()  # from here on the collector runs only if the pause runs it
    with collector_paused(), collector_paused():
        pass
    assert collections == []
    assert not gc.isenabled()
