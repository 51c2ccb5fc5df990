"""When the node's loop runs its next pass, and the one timer that wakes it for it.

The loop (``Node._loop``) runs a pass (``_tick``: every part's timers, the gossip
heartbeat, the duty priority) at the earliest deadline of its parts, or shortly after a
message that may have made a duty due. A pass is the dearest thing an idle node does
per event (issue 13's CPU budget), so the schedule keeps the number of passes to the
deadlines themselves:

* a request for an earlier pass moves the one timer; it does not wake the loop only for
  the loop to compute a new timeout and sleep again (that doubled the passes: one to
  re-arm, one to tick);
* a request for a later pass than the one already due does nothing.

The schedule reads the node's clock (``now_ms``) and arms asyncio timers, so it lives
in ``node/``, the layer that does I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

HOUSEKEEPING_GRID_MS = 1_000
"""Work without a deadline of its own (the gossip heartbeat, the apps' usage rounds,
the host's usage, RTT probes and seed pings) waits for the next point of a per-node
grid this far apart, unless a pass with a deadline comes first and takes it along:
while the node has apps to look after, whose rounds (crash checks, usage, replica
copies) run about once a second (``runtime/manager.py``)."""

IDLE_HOUSEKEEPING_GRID_MS = 2_000
"""The grid of a node with no app to look after (``AppManager.is_idle``): what is left
is the gossip heartbeat (every 2 s, ``GossipConfig.heartbeat_ms``) and rounds of 5 s,
so a point a second woke the node for nothing every other time. A multiple of
:data:`HOUSEKEEPING_GRID_MS`, so both grids share the node's phase. At 20 nodes on 2
cores (2 s slots, half the nodes on each grid in one testnet) the idle grid with the
2 s heartbeat cut 0.58-0.85 ms a slot off an off-duty node's CPU (issue 13's budget)."""


def get_housekeeping_grid(*, idle: bool) -> int:
    """The grid's interval: :data:`IDLE_HOUSEKEEPING_GRID_MS` for a node with no app to
    look after (``idle``), else :data:`HOUSEKEEPING_GRID_MS`."""
    return IDLE_HOUSEKEEPING_GRID_MS if idle else HOUSEKEEPING_GRID_MS


def get_housekeeping_time(due_ms: int, phase_ms: int, *, idle: bool = False) -> int:
    """The first point of the grid ``phase_ms + k * grid`` at or after ``due_ms``, where
    ``grid`` is :func:`get_housekeeping_grid`'s.

    Each part kept its own one-second period at its own phase: at 20 nodes a node ran
    about three passes a second, half of them for the gossip heartbeat or the apps'
    rounds alone, each costing what a whole pass costs (0.5 ms here). On one grid they
    share passes with each other and with the engine's. The phase differs per node
    (``get_housekeeping_phase``): on one host a common grid would wake every node at
    the same instant, and slots start on whole seconds."""
    return due_ms + (phase_ms - due_ms) % get_housekeeping_grid(idle=idle)


def get_housekeeping_phase(node_id: bytes) -> int:
    """This node's place on the housekeeping grids (either of them), from its id."""
    return int.from_bytes(node_id[:4], "big") % IDLE_HOUSEKEEPING_GRID_MS


class HousekeepingGrid:
    """Which point of the node's grid its housekeeping has served, and whether a pass
    at ``now`` serves the next one.

    A point is served by the first pass at most half a grid interval before it (or any
    pass after it): that pass runs the housekeeping as at the point, and the loop does
    not wake for the point itself. On a node off duty most passes come at deadlines the
    grid knows nothing of (after a block moved the head, at the report's signing time),
    and a point just after one of them was a wake-up of its own (0.5 ms a pass at 20
    nodes on 2 cores). Run early, each part still keeps its own period, counted from
    the point (``Gossip.on_tick`` and the apps' and usage rounds take the time they are
    handed), so none runs more often than before.
    """

    def __init__(self, phase_ms: int) -> None:
        self.phase_ms = phase_ms
        self.served_ms = -1
        """The latest point served (-1: none yet)."""

    def get_next_point(self, now: int, *, idle: bool) -> int:
        """The next point not served yet, after ``now``: when the loop must wake for it."""
        return get_housekeeping_time(max(now, self.served_ms) + 1, self.phase_ms, idle=idle)

    def take(self, now: int, *, idle: bool) -> int | None:
        """For a pass at ``now``: the time to run the housekeeping as (``now``, or the
        point it serves early), marking the point served; None: nothing to serve yet."""
        grid = get_housekeeping_grid(idle=idle)
        point = get_housekeeping_time(self.served_ms + 1, self.phase_ms, idle=idle)
        if point <= now:
            # Late or on time: serve the latest point passed (the ones before are lost).
            self.served_ms = get_housekeeping_time(now - grid + 1, self.phase_ms, idle=idle)
            return now
        if point - now <= grid // 2:
            self.served_ms = point
            return point
        return None


class TickSchedule:
    """The due time of the loop's next pass and the timer that sets :attr:`wake` then."""

    def __init__(self, now_ms: Callable[[], int]) -> None:
        self._now_ms = now_ms
        self.due_ms = 0
        """The next pass runs once the clock reaches this (0: at once)."""
        self.wake = asyncio.Event()
        """Set when the loop should look again: the timer fired, or :meth:`wake_now`."""
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: int | None = None
        self.arms = 0
        """Timers armed so far (tests read it to see that requests coalesce)."""

    def is_due(self, now: int) -> bool:
        return now >= self.due_ms

    def request(self, at_ms: int) -> None:
        """Run a pass no later than ``at_ms`` (a no-op if one is already due by then)."""
        if at_ms < self.due_ms:
            self.due_ms = at_ms
            self.arm()

    def set_next(self, at_ms: int) -> None:
        """After a pass: the next one is due at ``at_ms``."""
        self.due_ms = at_ms
        self.arm()

    def arm(self) -> None:
        """Make sure a timer wakes the loop at :attr:`due_ms` (one timer at a time)."""
        if self._handle is not None and self._armed_for == self.due_ms:
            return
        if self._handle is not None:
            self._handle.cancel()
        delay = max(0.0, (self.due_ms - self._now_ms()) / 1000)
        self._handle = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._armed_for = self.due_ms
        self.arms += 1

    def wake_now(self) -> None:
        """Wake the loop without a pass being due (it is stopping)."""
        self.wake.set()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._armed_for = None

    def _on_timer(self) -> None:
        # Forgotten before waking: a loop woken a little early (asyncio's clock
        # resolution) finds no timer and arms a fresh one for the same due time.
        self._handle = None
        self._armed_for = None
        self.wake.set()
