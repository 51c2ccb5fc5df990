"""An app's process group: signal it, end it, measure it.

The process runtime starts each app in its own session (``runtime/spawner.py``), so
the app's leader pid is also its process group id, and everything the app forked is in
that group. Every signal the runtime sends goes to the whole group: stopping an app
never leaves its children behind, and pausing it freezes all of them.

Usage is measured over the leader's process tree (psutil), as a share of the whole host
in basis points (``compute_cpu_bp``, also used by the container runtime).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import psutil

from edgechain.chain.model import BASIS_POINTS
from edgechain.runtime.watchdog import has_stop_pending


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def is_stopped(pid: int) -> bool:
    """True when process ``pid`` is stopped (SIGSTOP: a pause, or a freeze by the
    fencing watchdog, ``runtime/watchdog.py``), or has a SIGSTOP pending, so it stops
    before it runs again: it may be waiting for a CPU, finishing a write, or (until a
    SIGCONT) be a shell waiting for the child it vforked, which the same group
    SIGSTOP stopped before its exec."""
    try:
        status = psutil.Process(pid).status()
    except psutil.Error:
        return False
    if status == psutil.STATUS_STOPPED:
        return True
    return status != psutil.STATUS_ZOMBIE and has_stop_pending(pid)


def kill_leftovers(pgid: int) -> None:
    # The leader is gone; children it left in its group (a pending `sleep`) go too.
    signal_group(pgid, signal.SIGKILL)


def end_group(proc: subprocess.Popen[bytes], *, paused: bool, grace_s: float) -> None:
    """SIGTERM the group of ``proc`` (its leader), wait ``grace_s``, then SIGKILL; reap
    everything. ``paused``: the group is stopped (SIGSTOP) and may be continued for
    its SIGTERM. With no grace, SIGKILL alone: a stopped group never runs again."""
    pgid = proc.pid
    if paused and grace_s > 0:
        # A stopped process cannot handle SIGTERM; without a grace (removing the
        # origin's copy after a migration) SIGKILL alone ends it, never letting
        # the frozen copy run again.
        signal_group(pgid, signal.SIGCONT)
    if grace_s > 0 and signal_group(pgid, signal.SIGTERM):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    signal_group(pgid, signal.SIGKILL)
    proc.wait()
    kill_leftovers(pgid)


def compute_cpu_bp(cpu_seconds: float, wall_seconds: float) -> int:
    """CPU share of the whole host in basis points, clamped to [0, BASIS_POINTS]."""
    cores = psutil.cpu_count() or 1
    if wall_seconds <= 0:
        return 0
    share = cpu_seconds / (wall_seconds * cores)
    return max(0, min(BASIS_POINTS, round(share * BASIS_POINTS)))


def get_group_usage(leader_pid: int) -> tuple[float, int]:
    """CPU seconds (including reaped children) and RSS bytes of a process tree."""
    cpu, rss = 0.0, 0
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(leader_pid)
        with leader.oneshot():
            times = leader.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += leader.memory_info().rss
        for child in leader.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                cpu += times.user + times.system
                rss += child.memory_info().rss
    return cpu, rss
