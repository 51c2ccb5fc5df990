"""An app's process group: signal it, end it, measure it.

The process runtime starts each app in its own session (``runtime/spawner.py``), so
the app's leader pid is also its process group id, and everything the app forked is in
that group. Every signal the runtime sends goes to the whole group: stopping an app
never leaves its children behind, and pausing it freezes all of them; given the app
copy's state directory, it also goes to the processes that left the group with
``setsid`` (``runtime/app_processes.py``).

Usage is measured over the app's process group, as a share of the whole host in basis
points (``compute_cpu_bp``, also used by the container runtime). :class:`GroupCensus`
reads every group's usage in one pass over ``/proc`` and shares it between the apps
sampled in one round: finding one process tree's members means reading every process's
parent (psutil's ``children`` does), so measuring N apps one by one cost N passes, which
with 40 apps on a host of 300 processes was half a core, counted in the node's own load.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

import psutil

from edgechain.chain.model import BASIS_POINTS
from edgechain.runtime.app_cgroups import find_copy_members, read_cpu_seconds
from edgechain.runtime.app_processes import read_stat_fields, signal_stragglers
from edgechain.runtime.net_traffic import get_socket_inodes, read_tcp_socket_bytes
from edgechain.runtime.watchdog import has_stop_pending


def signal_group(pgid: int, sig: signal.Signals, state_dir: str | None = None) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists.

    ``state_dir``: the app copy's (``app_processes.get_state_dir_value``): its
    processes that left the group get ``sig`` too (``app_processes``)."""
    if state_dir is not None:
        signal_stragglers(state_dir, pgid, sig)
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
    fields = read_stat_fields(pid)  # one read: reconcile asks for every app each second
    if not fields:
        return False
    state = fields[0]
    if state == b"T":
        return True
    return state != b"Z" and has_stop_pending(pid)


def kill_leftovers(pgid: int, state_dir: str | None = None) -> None:
    # The leader is gone; children it left in its group (a pending `sleep`) go too,
    # and those that left the group (``app_processes``).
    signal_group(pgid, signal.SIGKILL, state_dir)


def end_group(
    proc: subprocess.Popen[bytes], *, paused: bool, grace_s: float, state_dir: str | None = None
) -> None:
    """SIGTERM the group of ``proc`` (its leader), wait ``grace_s``, then SIGKILL; reap
    everything. ``paused``: the group is stopped (SIGSTOP) and may be continued for
    its SIGTERM. With no grace, SIGKILL alone: a stopped group never runs again.
    ``state_dir``: the copy's, whose processes outside the group share its fate."""
    pgid = proc.pid
    if paused and grace_s > 0:
        # A stopped process cannot handle SIGTERM; without a grace (removing the
        # origin's copy after a migration) SIGKILL alone ends it, never letting
        # the frozen copy run again.
        signal_group(pgid, signal.SIGCONT, state_dir)
    if grace_s > 0 and signal_group(pgid, signal.SIGTERM, state_dir):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
    signal_group(pgid, signal.SIGKILL)
    proc.wait()
    kill_leftovers(pgid, state_dir)  # the group's rest, and its stragglers: one sweep


def compute_cpu_bp(cpu_seconds: float, wall_seconds: float) -> int:
    """CPU share of the whole host in basis points, clamped to [0, BASIS_POINTS]."""
    cores = psutil.cpu_count() or 1
    if wall_seconds <= 0:
        return 0
    share = cpu_seconds / (wall_seconds * cores)
    return max(0, min(BASIS_POINTS, round(share * BASIS_POINTS)))


def get_run_seconds(pid: int, fallback: float) -> float:
    """The CPU time of process ``pid`` (all its threads) in seconds, to the nanosecond
    from ``/proc/PID/schedstat``; ``fallback`` (psutil's) where that is not readable.

    Why not psutil's alone: ``/proc/PID/stat`` counts in 10 ms clock ticks, and a 2 %
    app sampled every second moves by 2 ticks, so truncation alone is a quarter of it.
    """
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as file:
            return int(file.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return fallback


CENSUS_MAX_AGE_S = 0.25
"""A census serves the stats calls of one sampling round (the app manager's, about once
a second), never a later one."""
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class GroupUsage:
    cpu_s: float
    """CPU seconds of the group's live members, and of the children they reaped."""
    rss: int
    """Resident bytes of the live members."""
    members: tuple[int, ...] = ()
    """The live members' pids."""


class GroupCensus:
    """Every process group's usage from one pass over ``/proc``, reused for
    ``max_age_s``. A member's CPU is ``/proc/PID/schedstat``'s (nanoseconds; ``stat``'s
    own count is in 10 ms ticks, a quarter of what a 2 % app uses in a second) plus the
    children it reaped (``stat``: cutime, cstime). Thread-safe."""

    def __init__(self, max_age_s: float = CENSUS_MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._taken = -math.inf
        self._groups: dict[int, GroupUsage] = {}
        self._tcp: dict[int, int] = {}
        """This round's TCP socket table (``net_traffic``), read when first asked."""
        self._tcp_taken = -math.inf

    def get(self, pgid: int) -> tuple[float, GroupUsage | None]:
        """(monotonic time of the census, the group's usage or None: no such group)."""
        with self._lock:
            self._refresh()
            return self._taken, self._groups.get(pgid)

    def _refresh(self) -> None:
        if time.monotonic() - self._taken > self.max_age_s:
            self._groups = read_groups()
            self._taken = time.monotonic()

    def get_copy(self, pgid: int, state_dir: str) -> tuple[float, GroupUsage | None]:
        """As :meth:`get`, but over the copy's cgroup where it has one
        (``app_cgroups``): its members whatever their group, and its CPU counter,
        which keeps the time of members that ended. The group's usage elsewhere."""
        cpu_s = read_cpu_seconds(state_dir)
        if cpu_s is None:
            return self.get(pgid)
        read = time.monotonic()  # the counter is read now, not at the census
        members = find_copy_members(state_dir)
        # The members' own stat files, not a census of the whole host: on a host of
        # many nodes (a testnet) every node read every process each second.
        return read, GroupUsage(cpu_s, sum(map(read_resident_bytes, members)), tuple(members))

    def get_tcp_bytes(self, usage: GroupUsage) -> dict[int, int]:
        """Bytes sent and received by each TCP socket the group's members hold (socket
        inode → bytes), from one socket table per round (``max_age_s``, on its own
        clock: a cgroup's copy takes no census); empty if the kernel's table cannot be
        read."""
        with self._lock:
            if time.monotonic() - self._tcp_taken > self.max_age_s:
                try:
                    self._tcp = read_tcp_socket_bytes()
                except OSError:
                    self._tcp = {}
                self._tcp_taken = time.monotonic()
            table = self._tcp
        return {i: table[i] for i in get_socket_inodes(usage.members) if i in table}


def read_resident_bytes(pid: int) -> int:
    """Process ``pid``'s resident bytes (``/proc/PID/stat``'s rss); 0 when it is gone."""
    fields = read_stat_fields(pid)
    try:
        return int(fields[21]) * _PAGE if fields else 0
    except (ValueError, IndexError):
        return 0


def read_groups() -> dict[int, GroupUsage]:
    """Process group id -> usage, for every process on the host now (one pass)."""
    cpu: dict[int, float] = {}
    rss: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = read_stat_fields(int(name))
        if fields is None:
            continue  # gone meanwhile
        try:
            # Counted from the state letter: ppid(1) pgrp(2) ... utime(11) stime(12)
            # cutime(13) cstime(14) ... rss(21).
            group = int(fields[2])
            own = (int(fields[11]) + int(fields[12])) / _TICKS
            reaped = (int(fields[13]) + int(fields[14])) / _TICKS
            resident = int(fields[21]) * _PAGE
        except (ValueError, IndexError):
            continue  # not a stat line we can read
        cpu[group] = cpu.get(group, 0.0) + get_run_seconds(int(name), own) + reaped
        rss[group] = rss.get(group, 0) + resident
        members.setdefault(group, []).append(int(name))
    return {group: GroupUsage(cpu[group], rss[group], tuple(members[group])) for group in cpu}
