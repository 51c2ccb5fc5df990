"""The ``watchdog-kill`` chaos fault: the node's fencing watchdog is SIGKILLed (a stray
``kill``, the OOM killer), then the node itself is paused for the fault's length.

Before session 44 a node never started its watchdog again, and a pause after such a
kill ran the node's apps beside the copies the chain recovered elsewhere (11 apps, 39
s, live). Now the node's ``WatchdogKeeper`` starts a new one at once: the fault waits
for it (:func:`kill_watchdog`) before the pause, and the run's exactly-once checks then
see whether the new watchdog fences the paused node's apps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil

from edgechain.lab.faults_live import get_watchdog_pid

RESTART_LIMIT_S = 10.0
"""How long the node has to start a new watchdog (it needs milliseconds)."""


def is_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def kill_watchdog(
    data_dir: Path, limit_s: float = RESTART_LIMIT_S
) -> tuple[int | None, float | None]:
    """SIGKILL the watchdog of the node in ``data_dir`` and wait for its node to start
    a new one: (the killed pid, seconds until the new one ran), None where there was
    no watchdog or no new one came within ``limit_s``."""
    old = get_watchdog_pid(data_dir)
    if old is None:
        return None, None
    start = time.monotonic()
    with contextlib.suppress(ProcessLookupError):
        os.kill(old, signal.SIGKILL)
    while time.monotonic() - start < limit_s:
        new = get_watchdog_pid(data_dir)
        if new is not None and new != old and is_alive(new):
            return old, time.monotonic() - start
        time.sleep(0.01)
    return old, None
