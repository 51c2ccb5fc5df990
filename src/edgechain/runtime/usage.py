"""CPU shares as a node reports them: of the whole host, or of a declared capacity.

By default every share is of the whole host: an app's ``cpu_bp`` is its CPU time over
wall time and the host's core count (``process_group.compute_cpu_bp``), and the node's
total is the host-wide use (``psutil.cpu_percent``), raised to at least the sum of its
apps (:func:`merge_cpu_bp`).

A node started with ``--cpu-capacity CORES`` declares the cores it *offers to its apps*
(like a Kubernetes node's allocatable CPU): a device given part of a bigger machine (a
VM's or a cgroup's share), or one node of a lab running several on one host. Every
share is then of CORES, and the node's total is the sum of its apps' shares. Its own
process is left out: every node runs the same protocol, so it says nothing about where
an app is better off, and it is noisy (the VDF when the node produces a block, about
one slot in N, takes a quarter of that slot on a core; a node that just sent
migrations spent CPU on the transfers), which made a planner evening out the totals
chase the node processes' differences instead of the apps' load. The host-wide figure
is left out too: it counts other tenants, whom the declared cores do not include.
Every share is clamped to ``BASIS_POINTS`` (apps over the capacity report exactly at
capacity).

Apps' shares are smoothed, because the planner compares them across nodes and noise
must not move apps (its module docstring asks for smoothed usage): each is the mean of
its last ``AVERAGE_SAMPLES`` samples (:class:`CpuAverager`); one sample covers about a
second, in which an app that burns in bursts (``apps/cpu-load``) reads anywhere from
half to twice its share.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Collection, Iterable

import psutil

from edgechain.chain.model import BASIS_POINTS
from edgechain.types import AppId

AVERAGE_SAMPLES = 30
"""Samples an app's CPU share is averaged over (the app manager samples about once a
second, so ~30 s). Measured on a 12-node live testnet (``edgechain experiment paper
--nodes 12 --apps 18 --slot-duration 4 --start-on-one-node``, one run each): the figure
of an app that did not move varied between its reports with a median coefficient of
variation of 0.20 over 5 samples and 0.085 over 30 (part of it is the kernel's 10 ms CPU
accounting tick against a 2 % app's ~20 ms a second), and balancing moves after the
fleet had spread fell from 32 to 21 in 30 slots. The price: a lasting change of an
app's load shows fully only after ~30 s (half of it after ~15 s); a newly started or
moved app is averaged over the samples it has so far, so it shows at once."""


def get_host_cores() -> int:
    """The host's logical CPUs, as ``compute_cpu_bp`` divides by."""
    return psutil.cpu_count() or 1


@functools.cache
def get_host_memory() -> int:
    """The host's RAM in bytes, which app shares are of; read once (``virtual_memory``
    parses ``/proc/meminfo``, and the runtimes asked for every app each second)."""
    return max(1, int(psutil.virtual_memory().total))


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


def merge_cpu_bp(host_bp: int, app_bps: Iterable[int], *, apps_only: bool) -> int:
    """The node's total CPU share for its report. ``apps_only`` (a declared capacity):
    the sum of its apps' shares, ``host_bp`` left out (module docstring); otherwise
    ``host_bp`` is the host-wide use, which already contains the apps, and is only
    raised to their sum (the two are sampled at different instants; a total below its
    parts would be nonsense to the load model)."""
    apps = sum(app_bps)
    total = apps if apps_only else max(host_bp, apps)
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

    def add(self, app: AppId, cpu_bp: int) -> float | None:
        """Record one sample; the app's mean now (None while it has none: the report
        leaves the app out rather than list it at 0)."""
        window = self._seen.get(app)
        if window is None:
            self._seen[app] = deque(maxlen=self.samples)  # this one was the baseline
            return None
        window.append(cpu_bp)
        return sum(window) / len(window)

    def retain(self, apps: Collection[AppId]) -> None:
        for app in [a for a in self._seen if a not in apps]:
            del self._seen[app]
