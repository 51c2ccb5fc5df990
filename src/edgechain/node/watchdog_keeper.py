"""Keeps the node's watchdog running: one collaborator of :class:`~edgechain.node.Node`.

Our apps are fenced only while the watchdog process runs (DESIGN.md, "Exactly once";
``runtime/fencing.py``). Killed (a stray ``pkill``, the OOM killer), it used to stay
dead: a later pause or partition of the node then left its apps running beside the
copies the chain recovered elsewhere (seen live in session 44: 11 apps twice for
39 s). The keeper starts it again at once and tells the operator:

* a pidfd (``os.pidfd_open``, Linux 5.3) on the loop wakes us the moment it ends, so
  the gap without fencing is the time to start a new one, tens of milliseconds;
* :meth:`WatchdogKeeper.check`, called on the node's ticks at most once a second, is
  the fallback (no pidfd, or a start that failed and is tried again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from edgechain.runtime.fencing import Watchdog
from edgechain.telemetry import logs

log = logging.getLogger("edgechain.node")

CHECK_INTERVAL_MS = 1_000
"""How often :meth:`WatchdogKeeper.check` looks (a ``waitpid``)."""


class WatchdogKeeper:
    def __init__(self, watchdog: Watchdog) -> None:
        self.watchdog = watchdog
        self._next_check_ms = 0
        self._pidfd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Be woken on ``loop`` when the running watchdog ends (after its start)."""
        self._loop = loop
        self._watch_current()

    def check(self, now_ms: int) -> None:
        """The fallback: at most once every ``CHECK_INTERVAL_MS``."""
        if now_ms >= self._next_check_ms:
            self._next_check_ms = now_ms + CHECK_INTERVAL_MS
            self._restart_if_ended()

    def close(self) -> None:
        """Before the watchdog is stopped on purpose: its end is not one to act on."""
        self._unwatch()
        self._loop = None

    def _restart_if_ended(self) -> None:
        try:
            code = self.watchdog.restart_if_ended()
        except OSError as exc:
            logs.error(log, "watchdog ended and cannot be started again", error=str(exc))
            return
        if code is not None:
            logs.error(
                log,
                "watchdog ended: started again",
                exit_status=code,
                pid=self.watchdog.pid,
                restarts=self.watchdog.restarts,
            )
            self._watch_current()

    def _on_ended(self) -> None:
        self._unwatch()
        self._restart_if_ended()

    def _watch_current(self) -> None:
        self._unwatch()
        pid = self.watchdog.pid
        if self._loop is None or pid is None:
            return
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            return  # gone already, or no pidfd here: the periodic check restarts it
        self._pidfd = pidfd
        self._loop.add_reader(pidfd, self._on_ended)

    def _unwatch(self) -> None:
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(pidfd)
        with contextlib.suppress(OSError):
            os.close(pidfd)
