"""The node's wall clock, in one place so every piece of a node reads the same one.

Milliseconds since the Unix epoch: the unit of every time the sans-I/O objects take
(slot times, wakeups, gossip and DHT timers). A node's pieces (``node.py``,
``node/vdf_worker.py``, ``node/events.py``, ``node/queries.py``) all read the node's
:class:`NodeClock`, and it hands its :meth:`NodeClock.now_ms` to the runtime (the
fencing lease's validity, app usage timestamps).

``offset_ms`` (``edgechain node --clock-offset-ms``, 0 by default) makes the node a
device whose wall clock is that far off (clock-skew experiments): every wall-clock
read of the node is shifted by it, and so is its fencing watchdog's, since the lease
it writes is in this clock (``runtime/fencing.py`` passes the offset on). Only the log
lines' ``t`` stays the true time, so the logs of nodes with different offsets line up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class NodeClock:
    """A node's wall clock: the host's, shifted by ``offset_ms``."""

    offset_ms: int = 0
    """Added to every reading (negative: the node's clock is behind)."""

    def now_ms(self) -> int:
        """Epoch milliseconds as the node sees them (``runtime/lease.get_now_ms``'s
        reading with the same offset)."""
        return time.time_ns() // 1_000_000 + self.offset_ms
