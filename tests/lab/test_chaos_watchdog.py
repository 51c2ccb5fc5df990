"""The ``watchdog-kill`` chaos fault's kill and wait, on a real watchdog process."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.lab.chaos_watchdog import kill_watchdog
from edgechain.node.watchdog_keeper import WatchdogKeeper
from edgechain.runtime.fencing import Watchdog
from edgechain.runtime.lease import get_now_ms, write_lease


@pytest.fixture
def watchdog(tmp_path: Path) -> Iterator[Watchdog]:
    write_lease(tmp_path, get_now_ms() + 60_000, [], os.getpid())
    started = Watchdog(poll_ms=50)
    started.start(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def test_the_fault_waits_for_the_node_to_start_a_new_watchdog(
    tmp_path: Path, watchdog: Watchdog
) -> None:
    loop = asyncio.new_event_loop()
    keeper = WatchdogKeeper(watchdog)  # the node's, on a loop of its own
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        loop.call_soon_threadsafe(keeper.watch, loop)
        first = watchdog.pid
        killed, seconds = kill_watchdog(tmp_path)
        assert killed == first
        assert seconds is not None and watchdog.pid not in (None, first)
    finally:
        loop.call_soon_threadsafe(keeper.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_without_a_keeper_the_fault_reports_no_new_watchdog(
    tmp_path: Path, watchdog: Watchdog
) -> None:
    killed, seconds = kill_watchdog(tmp_path, limit_s=0.5)
    assert killed is not None and seconds is None
    assert kill_watchdog(tmp_path / "none") == (None, None)
