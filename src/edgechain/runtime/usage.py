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

Both are smoothed, because the planner compares them across nodes and noise must not
move apps (its module docstring asks for smoothed usage). Apps' shares are averaged over
their last few samples (:class:`CpuAverager`): one sample covers about a second, in
which an app that burns in bursts (``apps/cpu-load``) reads anywhere from half to
twice its share. The node's own process is measured over the last
:data:`OWN_CPU_WINDOW_S` (:class:`CpuRate`): its load comes in bursts of its own
(the VDF when it produces a block, about one slot in N, takes a quarter of that slot
on a core), which over the 5 s between host measurements would swing its background
by more than a small app's whole load.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable

import psutil

from edgechain.chain.model import BASIS_POINTS
from edgechain.types import AppId

OWN_CPU_WINDOW_S = 30.0
"""Span the node process's own CPU is measured over (several of its producer slots)."""
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


class CpuRate:
    """CPU seconds per second over about the last ``window_s`` seconds, from readings of
    a cumulative CPU time (the node process's)."""

    def __init__(self, window_s: float = OWN_CPU_WINDOW_S) -> None:
        self.window_s = window_s
        self._readings: deque[tuple[float, float]] = deque()

    def add(self, t: float, cpu_seconds: float) -> float | None:
        """Record a reading at monotonic time ``t``; the rate since the oldest reading
        kept (the newest one at least ``window_s`` old), None on the first."""
        readings = self._readings
        readings.append((t, cpu_seconds))
        while len(readings) > 2 and readings[1][0] <= t - self.window_s:
            readings.popleft()
        first_t, first_cpu = readings[0]
        if t <= first_t:
            return None
        return max(0.0, cpu_seconds - first_cpu) / (t - first_t)
