"""The app manager's background tasks and per-app locks (``runtime/manager.py``).

Every order, migration, replica send and round of the manager runs in a task spawned
here, so :meth:`AppTasks.close` can cancel and await them all when the node stops. An
app's lock is held by whatever acts on it (a start, a migration out, a reconcile
action); reconcile skips an app whose lock is taken.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from edgechain.errors import StoreError
from edgechain.telemetry import logs
from edgechain.types import AppId

log = logging.getLogger("edgechain.apps")


class AppTasks:
    """The tasks in flight, the apps' locks, and whether the manager is closing."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[AppId, asyncio.Lock] = {}
        self.closing = False
        """Set by :meth:`close`; retry loops check it (see there)."""

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, StoreError):
            # Not our bug: the node's store failed under the task, and the node stops
            # on it (node/archive.StoreArchive); the node logs what to do.
            logs.error(log, "app task ended: the block store failed", error=str(exc))
        elif exc is not None:
            logs.log_exception(log, "app task failed", exc)

    def lock(self, app: AppId) -> asyncio.Lock:
        return self._locks.setdefault(app, asyncio.Lock())

    async def close(self) -> None:
        """Cancel every task and wait for them to end."""
        # Retry loops check this too: on Python 3.11 asyncio.wait_for may swallow a
        # cancellation that meets a refused connect, and a migration retrying towards a
        # destination that already stopped would then keep the node from stopping.
        self.closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            # A cancelled migration resumes the app here before it ends (transfer.py).
            await asyncio.gather(*self._tasks, return_exceptions=True)
