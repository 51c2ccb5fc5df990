"""State continuity in a chaos run (``lab/chaos.py``): the count each new copy of a
counter app starts from, against the highest count the app showed before it.

A copy that starts from 0 after its app has counted lost the app's state. That may be
all the system could do: the only replica sat on a node the fault cut off (a network
fault, where any node may be out of reach) or on the node that failed. It is a
violation (``state_lost``) when a node the fault left alone held a replica with a count
in it: the new copy should have started from there (a RECOVER onto the replica node, a
replica node's hand-off to a move's destination, ``runtime/replication.py``). Starts
from later than 0 but below the highest count are figures, not violations: a recovered
app resumes from its latest replica, up to ``replica_interval_slots`` behind.

Each copy is one process group (``faults_live.Instance``); its start count is the
``counter: starting from N`` line its log gets first (``exactly_once_watch.
read_start_line``), read while the copy runs: its node may delete the directory once
the app moves on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgechain.lab.chaos_faults import NETWORK_KINDS, Fault
from edgechain.lab.cluster import get_node_name
from edgechain.lab.exactly_once_watch import read_start_line
from edgechain.lab.faults_live import Instance, LiveTestnet, read_replica
from edgechain.lab.skip_causes import read_log_lines
from edgechain.runtime.app_starter import STATE_LOST_MESSAGE

START_LINE_WAIT_S = 30.0
"""A copy whose start line is not readable this long after it was first seen is given
up on (its directory went with a move, or it never wrote one)."""


@dataclass(frozen=True)
class StateStart:
    """One new copy of an app, and what it started from."""

    app: str
    node: str
    started_from: int
    highest_before: int
    """The highest count any earlier copy of the app was seen with (0: none)."""
    replicas: tuple[tuple[str, int], ...]
    """(node, count) of the replicas of the app holding a count, when a start from 0
    was read (empty otherwise)."""

    @property
    def count_lost(self) -> int:
        return max(0, self.highest_before - self.started_from)

    @property
    def is_from_nothing(self) -> bool:
        return self.started_from == 0 and self.highest_before > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "app": self.app,
            "node": self.node,
            "started_from": self.started_from,
            "highest_before": self.highest_before,
            "replicas": [list(r) for r in self.replicas],
        }


class StateWatch:
    """Follows every copy of the apps across samples of the process table."""

    def __init__(self, net: LiveTestnet) -> None:
        self.net = net
        self.highest: dict[str, int] = {}
        self.starts: list[StateStart] = []
        self.unread = 0
        """Copies whose start line was never read (:data:`START_LINE_WAIT_S`)."""
        self._known: set[tuple[str, str, int]] = set()
        self._pending: dict[tuple[str, str, int], tuple[Instance, int, float]] = {}

    def observe(self, instances: Iterable[Instance]) -> list[StateStart]:
        """Take one sample; the starts read in it, oldest copy first."""
        now = time.monotonic()
        running = [i for i in instances if not i.frozen]
        for instance in running:
            key = (instance.app, instance.node, instance.pid)
            if key not in self._known:
                self._known.add(key)
                self._pending[key] = (instance, self.highest.get(instance.app, 0), now)
        found = []
        for key, (instance, before, seen) in list(self._pending.items()):
            count = read_start_line(self.net, instance)
            if count is None:
                if now - seen > START_LINE_WAIT_S:
                    del self._pending[key]
                    self.unread += 1
                continue
            del self._pending[key]
            replicas = self._read_replicas(instance.app) if count == 0 and before > 0 else ()
            found.append(StateStart(instance.app, instance.node, count, before, replicas))
        for instance in running:
            count = self._read_count(instance)
            if count is not None and count > self.highest.get(instance.app, 0):
                self.highest[instance.app] = count
        self.starts.extend(found)
        return found

    def _read_count(self, instance: Instance) -> int | None:
        path = self.net.run_dir / instance.node / "apps" / instance.app / "state" / "count"
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            return None

    def _read_replicas(self, app: str) -> tuple[tuple[str, int], ...]:
        found = []
        for data_dir in sorted(self.net.run_dir.glob("node-*")):
            replica = read_replica(self.net.run_dir, data_dir.name, app)
            if replica is not None and replica.count > 0:
                found.append((replica.node, replica.count))
        return tuple(found)

    def to_json(self) -> dict[str, Any]:
        told = read_state_losses(self.net.run_dir)
        from_nothing = [
            {**s.to_json(), "told": (s.node, s.app[:16]) in told}
            for s in self.starts
            if s.is_from_nothing
        ]
        return {
            "starts": len(self.starts),
            "starts_unread": self.unread,
            "resumed_below_highest": sum(1 for s in self.starts if s.count_lost > 0),
            "max_count_lost": max((s.count_lost for s in self.starts), default=0),
            "from_nothing": from_nothing,
            "from_nothing_untold": sum(1 for s in from_nothing if not s["told"]),
        }


def read_state_losses(run_dir: Path) -> set[tuple[str, str]]:
    """(node name, app id's first 16 hex digits) of every start the nodes logged as
    without the app's state, from each node's log (a node whose data directory a
    full-disk fault replaced: its kept logs, ``chaos_disk.py``)."""
    found: set[tuple[str, str]] = set()
    for log in sorted(run_dir.glob("node-*/stderr.log")):
        node = log.parent.name.removesuffix("-logs")
        for line in read_log_lines(log):
            if STATE_LOST_MESSAGE not in line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("msg") == STATE_LOST_MESSAGE:
                found.add((node, str(event.get("app"))))
    return found


def get_state_violations(starts: Iterable[StateStart], fault: Fault | None) -> list[dict[str, Any]]:
    """The ``starts`` from nothing while a node ``fault`` (the latest) left alone held a
    replica with a count in it: where the app should have resumed from. None under a
    network fault, where any node may have been out of the new copy's reach."""
    if fault is not None and fault.kind in NETWORK_KINDS:
        return []
    hit = {get_node_name(i) for i in fault.targets} if fault is not None else set()
    found = []
    for start in starts:
        held = [node for node, _ in start.replicas if node not in hit]
        if start.is_from_nothing and held:
            found.append({**start.to_json(), "held_by": held})
    return found
