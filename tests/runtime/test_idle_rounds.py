"""The app manager's rounds on a node that holds no app (issue 13's CPU budget).

Reconcile and the usage sample run about once a second on every node; each lists the
runtime in a worker thread, because a listing can wait on an app's start or on a
container engine. A node with no app has nothing to list, and the two threads only
woke its loop twice more a second. ``NodeRuntimes.is_known_empty`` says when a round
can skip them: the process runtime's table is in memory, a container engine must be
asked. These tests count the worker threads a round really submits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgechain.runtime.manager import AppManager
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.runtimes import NodeRuntimes
from edgechain.types import NodeId

from .test_lifecycle import FakeChain, _new_app, _pids, _place, _single_pid, _wait_none


class CountingExecutor(ThreadPoolExecutor):
    """The loop's default executor (what ``asyncio.to_thread`` uses), counting the work
    handed to it."""

    def __init__(self) -> None:
        super().__init__(max_workers=4)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


def _threads_used(work: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """How many calls ``work`` handed to worker threads, run on a fresh loop."""
    executor = CountingExecutor()

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(executor)
        await work()

    try:
        asyncio.run(main())
    finally:
        executor.shutdown()
    return executor.submitted


async def _round(apps: AppManager) -> None:
    """What ``AppManager.tick`` runs about once a second, less the replica sends."""
    await apps.reconcile()
    await apps.usage.measure()


def test_a_process_runtime_is_known_empty_until_it_holds_an_app(tmp_path: Path) -> None:
    runtimes = NodeRuntimes(ProcessRuntime(tmp_path / "apps", stop_grace_s=1.0))
    try:
        assert runtimes.is_known_empty()
        app, spec, tag = _new_app()
        runtimes.start(app, spec)
        _single_pid(tag)
        assert not runtimes.is_known_empty()
        runtimes.stop(app)
        _wait_none(tag)
        assert not runtimes.is_known_empty(), "a stopped app is still held (its state)"
        runtimes.remove(app)
        assert runtimes.is_known_empty()
    finally:
        runtimes.close()


def test_an_idle_round_wakes_no_worker_thread_and_a_placed_app_is_still_started(
    manager: tuple[AppManager, FakeChain],
) -> None:
    apps, chain = manager
    chain.append(())  # a head with an empty registry
    assert _threads_used(lambda: _round(apps)) == 0
    assert not apps.usage.views

    # The chain places an app here: the next round starts it (in worker threads), and
    # from then on the rounds list and measure it in worker threads again.
    app, spec, tag = _new_app()
    _place(chain, app, spec)
    assert _threads_used(lambda: _round(apps)) > 0
    _single_pid(tag)
    assert _threads_used(lambda: _round(apps)) >= 2
    assert [v.name for v in apps.usage.views] == [spec.name]
    assert len(_pids(tag)) == 1


def test_the_manager_is_idle_only_with_nothing_here_to_look_after(
    manager: tuple[AppManager, FakeChain],
) -> None:
    """``is_idle`` picks the node's slower housekeeping grid (node/tick_schedule.py):
    false as soon as the head places an app here, before the app has started, and
    while the stopped app's state is still held."""
    apps, chain = manager
    assert apps.is_idle(), "no head yet"
    chain.append(())
    assert apps.is_idle()
    app, spec, tag = _new_app()
    record = _place(chain, app, spec)
    assert not apps.is_idle(), "placed here, not started yet"
    asyncio.run(_round(apps))
    _single_pid(tag)
    assert not apps.is_idle()
    # Moved away: the copy here stops, its state is held until it is removed.
    elsewhere = replace(record, node=NodeId(bytes(range(32))))
    chain.append((elsewhere,))
    assert not apps.is_idle(), "its copy still runs here"
    asyncio.run(_round(apps))
    _wait_none(tag)
    assert not apps.is_idle(), "its state is still held here"
    apps.runtime.remove(app)
    assert apps.is_idle()
