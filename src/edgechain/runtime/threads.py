"""The one way the runtime hands blocking work to a worker thread.

Runtime calls block (a container engine's API, a process's start, a snapshot's tar and
zstd), so the app manager and the transfers run them with ``asyncio.to_thread``. The
node's CPU meter charges spans on the loop thread only; :func:`run_in_thread` adds the
worker's own CPU to ``Component.APPS`` (``telemetry/cpu.charge_thread_cpu``), so the
slot that starts an app, or saves one for a migration, shows that work under ``apps``
instead of as the process's unaccounted CPU (issue 13: the components add up to the
process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from edgechain.telemetry.cpu import Component, charge_thread_cpu

P = ParamSpec("P")
R = TypeVar("R")


async def run_in_thread(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``asyncio.to_thread(fn, ...)``, the thread's CPU charged to the app manager."""
    return await asyncio.to_thread(charge_thread_cpu(Component.APPS, fn), *args, **kwargs)
