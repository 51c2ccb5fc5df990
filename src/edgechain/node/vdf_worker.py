"""The node's VDF evaluations: a thread of their own, stoppable, each timed in the log.

The VDF is the slot's critical path (the producer's candidate waits for it), so it
never queues behind other work: one worker thread, raised at start where the node may
raise priority (:func:`~edgechain.node.priority.raise_thread_priority`; chiavdf
releases the GIL while it works). Each evaluation runs while its keep-running file
exists (see :func:`edgechain.crypto.vdf.prove`): removing the file is how the node
stops one whose result the engine no longer wants. The "vdf done" log line splits the
time into queueing, computing (wall and the thread's CPU) and delivery, which tells a
starved producer from a slow one (ARCHITECTURE.md, "Real node").
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edgechain.consensus.messages import VdfRequest
from edgechain.crypto import vdf
from edgechain.node.clock import NodeClock
from edgechain.node.priority import (
    get_autogroup_nice,
    get_thread_policy,
    raise_thread_priority,
)
from edgechain.telemetry import logs
from edgechain.telemetry.cpu import Component, get_meter

log = logging.getLogger("edgechain.node")


class VdfRunner:
    """Runs the engine's ``VdfRequest`` s one at a time on the VDF thread.

    ``on_start`` is called once an evaluation is registered, before it is queued (the
    node raises its duty priority there); ``on_result`` gets each finished result, on
    the event loop. Dropped and failed evaluations are only logged. ``clock``: the
    node's, for the timings.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        on_start: Callable[[], None],
        on_result: Callable[[VdfRequest, vdf.VdfResult], None],
        clock: NodeClock,
    ) -> None:
        self._on_start = on_start
        self._on_result = on_result
        self._clock = clock
        # The VDF gets a thread of its own: it must never queue behind runtime calls. It
        # is the slot's critical path, so it also runs ahead of other work on the device.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="vdf", initializer=raise_thread_priority
        )
        self._running: dict[VdfRequest, Path] = {}
        self._dir = work_dir
        self._dir.mkdir(exist_ok=True)
        for leftover in self._dir.glob("*.run"):
            leftover.unlink()  # a killed run's; nothing evaluates them any more

    def is_running(self) -> bool:
        """True while an evaluation is queued or running (and not yet dropped)."""
        return bool(self._running)

    def start(self, request: VdfRequest) -> None:
        loop = asyncio.get_running_loop()
        started = self._clock.now_ms()
        logs.info(log, "vdf started", slot=request.slot, iterations=request.iterations)
        # The evaluation runs while this file exists (see vdf.prove): removing it is how
        # drop_unwanted stops an evaluation whose result nobody wants any more.
        keep_running = self._dir / f"{request.slot}-{request.challenge.hex()[:16]}.run"
        keep_running.touch()
        self._running[request] = keep_running
        self._on_start()
        timing: dict[str, int] = {}
        policy = {"class": "normal"}

        def prove() -> vdf.VdfResult:
            # Measured in the thread: tells a slow evaluation from a busy event loop.
            timing["start"] = self._clock.now_ms()
            timing["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            timing["group_nice"] = get_autogroup_nice() or 0
            policy["class"] = get_thread_policy()
            cpu_started = time.thread_time_ns()
            try:
                return vdf.prove(
                    request.group,
                    request.challenge,
                    request.iterations,
                    keep_running=str(keep_running),
                )
            finally:
                timing["end"] = self._clock.now_ms()
                cpu_ns = time.thread_time_ns() - cpu_started
                timing["cpu"] = cpu_ns // 1_000_000
                meter = get_meter()
                if meter is not None:
                    meter.add(Component.VDF_PROVING, cpu_ns)

        future = loop.run_in_executor(self._pool, prove)

        def done(f: asyncio.Future[vdf.VdfResult]) -> None:
            self._running.pop(request, None)
            keep_running.unlink(missing_ok=True)
            if f.cancelled():
                return
            now = self._clock.now_ms()
            fields = {
                "slot": request.slot,
                "ms": now - started,
                "queued_ms": timing["start"] - started,
                "compute_ms": timing["end"] - timing["start"],
                "cpu_ms": timing["cpu"],
                "delivery_ms": now - timing["end"],
                "nice": timing["nice"],
                "group_nice": timing["group_nice"],
                "policy": policy["class"],
            }
            error = f.exception()
            if isinstance(error, vdf.VdfCancelledError):
                logs.info(log, "vdf dropped", **fields)
                return
            if error is not None:
                logs.error(log, "vdf failed", **fields, error=repr(error))
                return
            logs.info(log, "vdf done", **fields)
            self._on_result(request, f.result())

        future.add_done_callback(done)

    def drop_unwanted(self, is_wanted: Callable[[VdfRequest], bool]) -> None:
        """Stop every evaluation ``is_wanted`` refuses (it ends as "vdf dropped")."""
        for request, keep_running in list(self._running.items()):
            if not is_wanted(request):
                keep_running.unlink(missing_ok=True)

    def drop_all(self) -> None:
        self.drop_unwanted(lambda _request: False)
