"""CPU shares as a node reports them: of the whole host, or of a declared capacity.

By default every share is of the whole host: an app's ``cpu_bp`` is its CPU time over
wall time and the host's core count (``process_group.compute_cpu_bp``), and the node's
total is the host-wide use (``psutil.cpu_percent``), raised to at least the sum of its
apps (:func:`merge_cpu_bp`).

A node started with ``--cpu-capacity CORES`` reports shares of CORES instead. That is
a device given part of a bigger machine (a VM's or a cgroup's share, or one node of a
lab running several on one host): its apps' shares of the whole host would make it
look emptier than it is. Its total is then the CPU it knows it uses itself, its own
process plus its apps, over CORES: the host-wide figure would count work of other
tenants that the device's capacity does not include. Every share is clamped to
``BASIS_POINTS`` (a node over its capacity reports exactly at capacity).

Apps' shares are averaged over their last few samples (:class:`CpuAverager`): one
sample covers about a second, in which the kernel's 10 ms accounting ticks alone make a
2 % app read anywhere from 1 % to 4 %, and the planner compares these figures across
nodes (its module docstring asks for smoothed usage: noise must not move apps).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable

import psutil

from edgechain.chain.model import BASIS_POINTS
from edgechain.types import AppId

AVERAGE_SAMPLES = 5
"""Samples an app's CPU share is averaged over (the app manager samples about once a
second, so ~5 s: the node's host figures cover the same span)."""


def get_host_cores() -> int:
    """The host's logical CPUs, as ``compute_cpu_bp`` divides by."""
    return psutil.cpu_count() or 1


def compute_capacity_bp(cores_used: float, capacity: float) -> int:
    """``cores_used`` (CPU seconds per second) as basis points of ``capacity`` cores,
    rounded and clamped to 0..BASIS_POINTS."""
    if capacity <= 0:
        return 0
    return max(0, min(BASIS_POINTS, round(cores_used / capacity * BASIS_POINTS)))


def scale_host_bp(host_bp: float, capacity: float | None, host_cores: int | None = None) -> int:
    """A share in basis points of the whole host, as basis points of ``capacity`` cores
    (None: of the whole host, unchanged), rounded and clamped."""
    if capacity is None:
        return max(0, min(BASIS_POINTS, round(host_bp)))
    cores = host_cores if host_cores is not None else get_host_cores()
    return compute_capacity_bp(host_bp / BASIS_POINTS * cores, capacity)


def merge_cpu_bp(node_bp: int, app_bps: Iterable[int], *, node_only: bool) -> int:
    """The node's total CPU share for its report. ``node_only``: ``node_bp`` is the node
    process alone (a declared capacity), so its apps are added; otherwise it is the
    host-wide use, which already contains the apps, and is only raised to their sum
    (the two are sampled at different instants; a total below its parts would be
    nonsense to the load model)."""
    apps = sum(app_bps)
    total = node_bp + apps if node_only else max(node_bp, apps)
    return max(0, min(BASIS_POINTS, total))


class CpuAverager:
    """Each app's CPU share, the mean of its last ``samples`` samples.

    The runtime's first sample of an app after it started is a baseline that reads 0
    (no earlier CPU time to subtract), so the first sample of an app not seen here
    before is left out; :meth:`retain` forgets apps that stopped running, and an app
    that comes back starts afresh. Not thread-safe: one measuring round at a time.
    """

    def __init__(self, samples: int = AVERAGE_SAMPLES) -> None:
        self.samples = max(1, samples)
        self._seen: dict[AppId, deque[int]] = {}

    def add(self, app: AppId, cpu_bp: int) -> float:
        """Record one sample; the app's mean now (0.0 while it has none)."""
        window = self._seen.get(app)
        if window is None:
            self._seen[app] = deque(maxlen=self.samples)  # this one was the baseline
            return 0.0
        window.append(cpu_bp)
        return sum(window) / len(window)

    def retain(self, apps: Collection[AppId]) -> None:
        for app in [a for a in self._seen if a not in apps]:
            del self._seen[app]
