"""The node's wall clock, in one place so every piece of a node reads the same one.

Milliseconds since the Unix epoch: the unit of every time the sans-I/O objects take
(slot times, wakeups, gossip and DHT timers). A node's pieces (``node.py``,
``node_vdf.py``, ``node_events.py``, ``node_queries.py``) all call :func:`now_ms`.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
