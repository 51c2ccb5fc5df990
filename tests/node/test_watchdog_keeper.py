"""The node keeps its watchdog running: a real watchdog process, killed for real."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from edgechain.node.watchdog_keeper import WatchdogKeeper
from edgechain.runtime.fencing import Watchdog
from edgechain.runtime.lease import get_now_ms, write_lease

LIMIT_S = 20.0


async def _wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.01)


def test_a_killed_watchdog_is_started_again_as_soon_as_it_ends(tmp_path: Path) -> None:
    """The pidfd wakes the loop: no periodic check is called here at all."""
    data_dir = tmp_path
    write_lease(data_dir, get_now_ms() + 60_000, [], os.getpid())
    watchdog = Watchdog(poll_ms=50)
    keeper = WatchdogKeeper(watchdog)

    async def run() -> None:
        watchdog.start(data_dir)
        keeper.watch(asyncio.get_running_loop())
        first = watchdog.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        await _wait_for(lambda: watchdog.restarts == 1, "the watchdog was not started again")
        second = watchdog.pid
        assert second is not None and second != first and watchdog.is_alive()
        os.kill(second, signal.SIGKILL)  # and again: the new one is watched too
        await _wait_for(lambda: watchdog.restarts == 2, "the second watchdog was not restarted")
        third = watchdog.pid
        keeper.close()  # a clean stop: its end is not acted on
        watchdog.stop()
        await asyncio.sleep(0.2)
        keeper.check(get_now_ms())
        assert watchdog.restarts == 2 and watchdog.pid is None
        assert third is not None and not psutil.pid_exists(third)

    try:
        asyncio.run(run())
    finally:
        keeper.close()
        watchdog.stop()


def test_the_periodic_check_restarts_a_watchdog_nobody_watched(tmp_path: Path) -> None:
    data_dir = tmp_path
    write_lease(data_dir, get_now_ms() + 60_000, [], os.getpid())
    watchdog = Watchdog(poll_ms=50)
    keeper = WatchdogKeeper(watchdog)  # never watching: no loop
    watchdog.start(data_dir)
    try:
        first = watchdog.pid
        assert first is not None
        keeper.check(0)  # running: left alone
        assert watchdog.restarts == 0
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + LIMIT_S
        now = 1_000
        while watchdog.restarts == 0:
            assert time.monotonic() < deadline, "the check did not restart it"
            keeper.check(now)
            now += 1_000
            time.sleep(0.01)
        assert watchdog.is_alive() and watchdog.pid != first
    finally:
        watchdog.stop()
