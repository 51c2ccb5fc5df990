"""The fencing watchdog: freezes a node's apps once the node's lease has expired.

Why (DESIGN.md, "Exactly once: the app-layer contract"): the chain re-places the apps
of a node that went silent. A node that is merely paused (SIGSTOP), wedged or cut off
still has its apps running, so without fencing they would run twice. The node renews a
lease while it sees a current chain (``runtime/lease.py``); this watchdog, a separate
OS process, so it keeps working while the node is stopped, reads the lease every poll:

* expired (or missing): SIGSTOP the process group of every app under
  ``<data_dir>/apps/*/pid`` whose leader is alive with the recorded creation time
  (a reused pid is never signalled) and is not stopped already; apps started while
  the lease is expired are frozen by the next poll;
* valid: SIGCONT only the groups this watchdog froze whose app the lease lists.
  Groups it froze that the lease does not list stay frozen (stale copies: the node
  kills them). It never thaws a group it did not freeze, nor one the runtime paused
  itself for a migration (``apps/<hex>/paused``).

What it froze is in ``<data_dir>/watchdog.json`` (rewritten atomically on every
change; a freeze is in its ``groups`` before its signal, so a successor knows every
group a watchdog killed mid-pass left stopped, and in ``frozen`` after it), and every
freeze and thaw is one JSON line on stderr. Its clock is the node's:
``--clock-offset-ms`` (the node's, passed on by ``fencing.Watchdog``) shifts every
reading (the lease's expiry and retirement, ``since_ms``, the log's ``ms``), as the
node's lease is written in its own shifted clock. With ``--parent-pid`` (the node),
once the parent is gone it keeps watching until the lease expires, freezes what is
left, then exits. SIGTERM or SIGINT end it at once, without freezing or thawing
anything.

Small on purpose, one per node and 50 nodes per host: stdlib only, it reads ``/proc``
itself (the creation time as psutil computes it: boot time plus start ticks) and
imports nothing of edgechain but ``runtime/lease.py`` and ``runtime/app_processes.py``
(every signal to an app's group also reaches its processes that left the group).
``fencing.Watchdog`` starts it without the package's ``__init__`` modules (which load
the whole runtime); by hand::

    python -m edgechain.runtime.watchdog --data-dir D [--poll-ms 100] [--parent-pid P]
        [--clock-offset-ms=N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from dataclasses import dataclass

from edgechain.runtime.app_processes import (
    find_copies_under,
    find_namespace_members,
    get_foreign_namespace,
    get_state_dir_value,
    read_stat_fields,
    signal_namespace_stragglers,
    signal_stragglers,
)
from edgechain.runtime.durable_files import write_json_atomically
from edgechain.runtime.lease import (
    APPS_DIR,
    LEASE_FILE,
    PID_FILE,
    RUNTIME_PAUSED_FILE,
    WATCHDOG_PID_FILE,
    WATCHDOG_STATE_FILE,
    Lease,
    get_now_ms,
    is_expired,
    read_json,
    read_lease,
    read_pid_entry,
    write_pid_entry,
)

TYPE_CHECKING = False  # typing itself would cost every watchdog half a megabyte
if TYPE_CHECKING:
    from collections.abc import Collection, Iterator, Sequence

DEFAULT_POLL_MS = 100
PARENT_CHECK_MS = 1_000
"""How often the parent (the node) is looked for. Its going only lets the watchdog
exit once the lease has expired; freezing follows the lease alone, every poll."""
CREATE_TIME_TOLERANCE_S = 0.01
"""How close a leader's creation time must be to the pid file's (as in spawner.py)."""
STOPPED_STATES = frozenset("Tt")
"""Leader states that mean someone already stopped the group (signal or tracer)."""
RUNNING_STATES = frozenset("RSDIW")
STRAGGLER_SWEEP_MS = 1_000
"""While the lease is expired, how often the processes that left their app's group are
looked for (a pass over ``/proc``, ~2 ms with 300 processes): the groups are frozen
every poll, but 50 watchdogs whose leases expired together on an overloaded host must
not add a scan each every 100 ms."""
_EXIT_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Identity = tuple[int, float]
"""A group leader: its pid and its creation time (epoch seconds, psutil's)."""


@dataclass(frozen=True)
class Leader:
    """An app's recorded group leader, found alive."""

    app: str
    """The app's id in hex (its directory's name)."""
    pid: int
    created: float
    state: str
    """The kernel's one-letter state (``/proc/PID/stat``): R, S, D, T, Z..."""


# --- /proc ------------------------------------------------------------------------------


def read_proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks after boot) of ``pid``; None if gone."""
    fields = read_stat_fields(pid)
    if fields is None:
        return None
    try:
        return fields[0].decode("ascii"), int(fields[19])
    except (IndexError, ValueError):
        return None


def read_boot_time() -> float:
    """The boot time in epoch seconds, as psutil reads it (``btime`` of /proc/stat)."""
    with open("/proc/stat", "rb") as file:
        for line in file:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def find_process(pid: int, created: float, boot_time: float) -> str | None:
    """The state of ``pid`` if it is the process created at ``created``, else None.

    "T" also for a process with a SIGSTOP pending: it stops before it runs again. It
    may be waiting to be scheduled, finishing a write, or (for good, until a SIGCONT)
    be a shell waiting for the child it vforked, which the same SIGSTOP stopped
    before its exec.
    """
    found = read_proc_stat(pid)
    if found is None:
        return None
    state, start_ticks = found
    if abs(boot_time + start_ticks / _CLOCK_TICKS - created) >= CREATE_TIME_TOLERANCE_S:
        return None  # the pid now belongs to another process
    return "T" if state in RUNNING_STATES and has_stop_pending(pid) else state


def has_stop_pending(pid: int) -> bool:
    """SIGSTOP is pending for ``pid`` (its own or its thread group's pending set)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as file:
            return is_stop_pending_in(file.read())
    except OSError:
        return False


def is_stop_pending_in(status: bytes) -> bool:
    """Whether a ``/proc/PID/status`` text has SIGSTOP in ``SigPnd`` or ``ShdPnd``.
    Found in the whole text, not line by line: reconcile asks for every app's process
    each second."""
    pending = 0
    for key in (b"\nSigPnd:", b"\nShdPnd:"):
        at = status.find(key)
        if at >= 0:
            try:
                pending |= int(status[at + len(key) : status.find(b"\n", at + 1)], 16)
            except ValueError:
                return False
    return bool(pending & 1 << (signal.SIGSTOP - 1))


def get_own_create_time() -> float:
    found = read_proc_stat(os.getpid())
    assert found is not None  # we are running
    return read_boot_time() + found[1] / _CLOCK_TICKS


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when it is gone or not ours to signal."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _is_in_group(pid: int, pgid: int) -> bool:
    """``pid`` belongs to process group ``pgid`` (the group's signal reached it); a
    process gone meanwhile counts as in it: there is nothing left to stop."""
    try:
        return os.getpgid(pid) == pgid
    except OSError:
        return True


def is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def find_leaders(apps_dir: str, boot_time: float) -> Iterator[Leader]:
    """Every app under ``apps_dir`` whose pid file names a live group leader."""
    try:
        entries = list(os.scandir(apps_dir))
    except OSError:
        return
    for entry in entries:
        recorded = read_pid_entry(os.path.join(entry.path, PID_FILE))
        if recorded is None:
            continue
        pid, created = recorded
        state = find_process(pid, created, boot_time)
        if state is not None and is_group_leader(pid):
            yield Leader(entry.name, pid, created, state)


# --- the fence --------------------------------------------------------------------------


class Fence:
    """The groups this watchdog froze, and the freeze and thaw passes over them;
    ``clock_offset_ms``: the node's (every reading of the clock is shifted by it)."""

    def __init__(self, data_dir: str, clock_offset_ms: int = 0) -> None:
        self.data_dir = data_dir
        self.clock_offset_ms = clock_offset_ms
        self.apps_dir = os.path.join(data_dir, APPS_DIR)
        self.frozen: dict[str, Identity] = {}
        self.retired: set[str] = set()
        """Frozen groups already sent SIGKILL (a zombie leader lingers until reaped)."""
        self.since_ms: int | None = None
        """When the oldest group still frozen was frozen; None when none is."""
        self.swept_ms: int | None = None
        """When this expiry's last straggler sweep ran (None: none yet)."""

    def now_ms(self) -> int:
        """The node's wall clock: what the lease's times are compared with."""
        return get_now_ms(self.clock_offset_ms)

    def log(self, event: str, **fields: object) -> None:
        """One JSON line on stderr (``watchdog.log``, in the node's data dir), or none.

        The log is the one thing here a full disk stops, and it must not stop the
        fence: a full disk also stops the node renewing its lease, so that is when the
        watchdog freezes. A write that raised used to end the watchdog right after its
        first freeze; the one its node started next did not know that group (its
        ``watchdog.json`` was not written either) and never thawed it: the app stayed
        frozen on a live node the chain placed it on (chaos, session 49: 14-slot
        full-disk faults)."""
        entry = {"ms": self.now_ms(), "event": event, **fields}
        # Unwritten lines stay in the stream's buffer and go out once there is room.
        with contextlib.suppress(OSError):
            print(json.dumps(entry, separators=(",", ":")), file=sys.stderr, flush=True)

    # --- state file ---

    def save(self, signalling: Collection[str] = ()) -> None:
        """Rewrite ``watchdog.json``: ``frozen`` is what the node reports as frozen,
        ``groups`` what a successor adopts. ``signalling``: groups about to get their
        SIGSTOP, in ``groups`` already (written ahead) but not yet ``frozen``."""
        content = {
            "frozen": sorted(app for app in self.frozen if app not in signalling),
            "since_ms": self.since_ms,
            "pid": os.getpid(),
            "groups": {app: list(identity) for app, identity in sorted(self.frozen.items())},
        }
        try:
            write_json_atomically(os.path.join(self.data_dir, WATCHDOG_STATE_FILE), content)
        except OSError as exc:
            self.log("error", what="cannot write state", error=str(exc))

    def adopt_previous(self) -> None:
        """Take over the groups a previous watchdog froze that are still stopped, so
        a lease that lists them again thaws them."""
        previous = read_json(os.path.join(self.data_dir, WATCHDOG_STATE_FILE)) or {}
        groups = previous.get("groups")
        if not isinstance(groups, dict):
            return
        boot_time = read_boot_time()
        for app, identity in groups.items():
            try:
                pid, created = int(identity[0]), float(identity[1])
            except (TypeError, ValueError, IndexError, KeyError):
                continue
            if find_process(pid, created, boot_time) == "T":
                self.frozen[app] = (pid, created)
                self.log("adopt", app=app, pid=pid)
        if self.frozen:
            since = previous.get("since_ms")
            self.since_ms = since if isinstance(since, int) else self.now_ms()

    # --- passes ---

    def freeze_all(self, boot_time: float) -> bool:
        """Freeze every app group that runs, and every process of an app copy here
        that left its group; True when the frozen set changed."""
        changed = self._forget_gone(boot_time)
        leaders = list(find_leaders(self.apps_dir, boot_time))
        changed |= self._freeze(leaders)
        now = self.now_ms()
        if self.swept_ms is None or now - self.swept_ms >= STRAGGLER_SWEEP_MS:
            self.swept_ms = now
            self._freeze_stragglers()
            self._freeze_container_stragglers(leaders)
        return changed

    def _freeze_container_stragglers(self, leaders: Sequence[Leader]) -> None:
        """SIGSTOP the processes of each container app that left its init's group (a
        ``setsid`` in the container: its environment names the container's ``/state``,
        so the sweep by environment misses it), found by the init's PID namespace
        (``app_processes``). One pass over ``/proc`` for all containers; none when no
        leader is a container's."""
        containers: dict[str, Leader] = {}
        for leader in leaders:
            namespace = get_foreign_namespace(leader.pid)
            if namespace is not None:
                containers[namespace] = leader
        for namespace, pids in find_namespace_members(containers).items():
            leader = containers[namespace]
            stopped = sum(self._stop(pid) for pid in pids if not _is_in_group(pid, leader.pid))
            if stopped:
                self.log("freeze_stragglers", app=leader.app, processes=stopped)

    @staticmethod
    def _stop(pid: int) -> bool:
        """SIGSTOP ``pid`` unless it is gone or stopped already; True when sent."""
        found = read_proc_stat(pid)
        if found is None or found[0] in STOPPED_STATES or has_stop_pending(pid):
            return False
        try:
            os.kill(pid, signal.SIGSTOP)
        except OSError:
            return False
        return True

    def _freeze_stragglers(self) -> None:
        """SIGSTOP every process whose environment names an app copy of this node
        (``app_processes``) and still runs: those that left their group (a daemon an
        app started with ``setsid``) and those whose leader is gone (the node died
        and its apps with it, by their parent-death signal, which a process started
        in a new session does not inherit). One pass over ``/proc`` for all apps.
        They stay stopped: the thaw continues a group and its stragglers together;
        a leaderless one is killed by the node (``kill_leftovers``, or the reaping of
        a restarted node's runtime)."""
        for state_dir, pids in find_copies_under(self.apps_dir).items():
            stopped = sum(self._stop(pid) for pid in pids)
            if stopped:
                app = os.path.basename(os.path.dirname(state_dir))
                self.log("freeze_stragglers", app=app, processes=stopped)

    def _freeze(self, leaders: Sequence[Leader]) -> bool:
        """SIGSTOP the groups of ``leaders`` that run and are not ours yet (and again
        those of ours someone continued); True when the frozen set changed (and
        ``watchdog.json``, written ahead, is to be written again).

        Written ahead: the new groups are in ``watchdog.json`` before they get the
        signal. A watchdog SIGKILLed between the two (the OOM killer, an operator)
        would otherwise leave a group stopped that no successor knows of, and
        ``adopt_previous`` takes over only the listed groups that are stopped: the
        app would stay frozen on a node the chain places it on, for good."""
        new: list[Leader] = []
        for leader in leaders:
            if self.frozen.get(leader.app) == (leader.pid, leader.created):
                if leader.state in RUNNING_STATES and signal_group(leader.pid, signal.SIGSTOP):
                    self.log("refreeze", app=leader.app, pid=leader.pid)  # continued
            elif leader.state not in STOPPED_STATES:  # else the runtime's pause: not ours
                new.append(leader)
        if not new:
            return False
        if not self.frozen:
            self.since_ms = self.now_ms()
        for leader in new:
            self.frozen[leader.app] = (leader.pid, leader.created)
        self.save(signalling={leader.app for leader in new})
        for leader in new:
            if signal_group(leader.pid, signal.SIGSTOP):
                self.log("freeze", app=leader.app, pid=leader.pid)
            else:  # gone meanwhile (its stragglers: freeze_all)
                del self.frozen[leader.app]
        if not self.frozen:
            self.since_ms = None
        return True

    def thaw_listed(self, lease: Lease, boot_time: float) -> bool:
        """Thaw the groups this watchdog froze that ``lease`` lists; True on change."""
        changed = self._forget_gone(boot_time)
        self.swept_ms = None  # the next expiry sweeps at once
        for app, (pid, _) in list(self.frozen.items()):
            if app not in lease.apps:
                continue  # a stale copy: stays frozen until the node kills it
            del self.frozen[app]
            changed = True
            if os.path.exists(os.path.join(self.apps_dir, app, RUNTIME_PAUSED_FILE)):
                self.log("leave", app=app, pid=pid, why="paused by the runtime")
            elif self._signal(app, pid, signal.SIGCONT):
                self.log("thaw", app=app, pid=pid)
        if not self.frozen:
            self.since_ms = None
        return changed

    def retire_all(self) -> None:
        """SIGKILL the frozen groups: the chain may run these apps elsewhere by now
        (``Lease.retire_after_ms``). Stopped processes die of SIGKILL without running
        again; their state stays on disk. They are forgotten once gone."""
        for app, (pid, _) in self.frozen.items():
            if app not in self.retired and self._signal(app, pid, signal.SIGKILL):
                self.retired.add(app)
                self.log("retire", app=app, pid=pid)

    def _signal(self, app: str, pgid: int, sig: signal.Signals) -> bool:
        """``sig`` to the app's group and to its processes that left the group
        (``app_processes``: a daemon it started with ``setsid`` would run on, next
        to the copy the chain places elsewhere; in a container, found by its PID
        namespace); True when the group got it."""
        signal_stragglers(get_state_dir_value(os.path.join(self.apps_dir, app)), pgid, sig)
        signal_namespace_stragglers(pgid, sig)
        return signal_group(pgid, sig)

    def _forget_gone(self, boot_time: float) -> bool:
        """Drop the frozen groups whose leader is gone (killed by the node and reaped;
        a zombie leader's group may still hold frozen members)."""
        gone = [
            app
            for app, (pid, created) in self.frozen.items()
            if find_process(pid, created, boot_time) is None
        ]
        for app in gone:
            self.log("gone", app=app, pid=self.frozen.pop(app)[0])
            self.retired.discard(app)
        if gone and not self.frozen:
            self.since_ms = None
        return bool(gone)


# --- the node, our parent -------------------------------------------------------------


class Parent:
    """The node process, recognised by its start time (its pid may be reused)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        found = read_proc_stat(pid)
        self.start_ticks = found[1] if found is not None else None
        self.gone = False

    def is_gone(self) -> bool:
        """True once the parent is found gone (and from then on)."""
        if not self.gone:
            found = read_proc_stat(self.pid)
            self.gone = found is None or found[0] in "ZX" or found[1] != self.start_ticks
        return self.gone


class LeaseReader:
    """The lease file, read again only when it changed.

    The node replaces the file atomically on every write (a new inode), so an unchanged
    ``(inode, mtime, size)`` is an unchanged lease; one ``stat`` per poll instead of an
    open, a read and a JSON parse. With 100 nodes on a host, polling 10 times a second,
    that parse was 40 % of a core. Expiry is still judged against the clock every poll.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._key: tuple[int, int, int] | None = None
        self._lease: Lease | None = None

    def read(self) -> Lease | None:
        try:
            info = os.stat(self.path)
        except OSError:
            self._key = None
            return None  # missing: expired
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if key != self._key:
            self._lease = read_lease(self.path)
            self._key = key
        return self._lease


# --- the loop ---------------------------------------------------------------------------


def run(data_dir: str, poll_ms: int, parent_pid: int | None, clock_offset_ms: int = 0) -> int:
    """Poll until SIGTERM/SIGINT, or until the lease expired after the parent went;
    ``clock_offset_ms``: the node's, added to every reading of the clock."""
    # Exit signals are taken synchronously (sigtimedwait is the poll's sleep), so a
    # pass is never cut short between a signal and its record.
    signal.pthread_sigmask(signal.SIG_BLOCK, _EXIT_SIGNALS)
    fence = Fence(data_dir, clock_offset_ms)
    try:
        write_pid_entry(
            os.path.join(data_dir, WATCHDOG_PID_FILE), os.getpid(), get_own_create_time()
        )
    except OSError as exc:  # a full disk: the node recorded our pid when it started us
        fence.log("error", what="cannot write the pid file", error=str(exc))
    fence.adopt_previous()
    fence.save()
    parent = Parent(parent_pid) if parent_pid is not None else None
    fence.log(
        "start",
        data_dir=data_dir,
        poll_ms=poll_ms,
        parent_pid=parent_pid,
        clock_offset_ms=clock_offset_ms,
    )
    leases = LeaseReader(os.path.join(data_dir, LEASE_FILE))
    parent_checked_ms: int | None = None
    while True:
        lease = leases.read()
        now = fence.now_ms()
        expired = is_expired(lease, now)
        if poll(fence, lease, expired):
            fence.save()
        due = parent_checked_ms is None or now - parent_checked_ms >= PARENT_CHECK_MS
        if parent is not None and not parent.gone and (due or expired):
            parent_checked_ms = now
            if parent.is_gone():
                fence.log("parent gone", pid=parent.pid, then="exit once the lease expires")
        if parent is not None and parent.gone and expired:
            fence.log("exit", why="parent gone and lease expired", frozen=len(fence.frozen))
            return 0
        received = signal.sigtimedwait(_EXIT_SIGNALS, poll_ms / 1000)
        if received is not None:
            fence.log("exit", why=signal.Signals(received.si_signo).name, frozen=len(fence.frozen))
            return 0


def poll(fence: Fence, lease: Lease | None, expired: bool) -> bool:
    """One pass; True when the frozen set changed."""
    if not expired:
        if not fence.frozen:
            return False  # the common case: a valid lease and nothing to thaw
        assert lease is not None
        return fence.thaw_listed(lease, read_boot_time())
    changed = fence.freeze_all(read_boot_time())
    retire = lease.retire_after_ms if lease is not None else None
    if retire is not None and fence.now_ms() >= retire:
        fence.retire_all()
    return changed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m edgechain.runtime.watchdog",
        description="Freeze a node's apps while its fencing lease is expired.",
    )
    parser.add_argument("--data-dir", required=True, help="the node's data directory")
    parser.add_argument("--poll-ms", type=int, default=DEFAULT_POLL_MS)
    parser.add_argument("--parent-pid", type=int, default=None, help="the node's pid")
    parser.add_argument(
        "--clock-offset-ms",
        type=int,
        default=0,
        help="the node's --clock-offset-ms: added to every reading of the clock, as the "
        "node writes the lease in its shifted clock (negative: write --clock-offset-ms=-N)",
    )
    args = parser.parse_args(argv)
    if args.poll_ms <= 0:
        parser.error("--poll-ms must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run(args.data_dir, args.poll_ms, args.parent_pid, args.clock_offset_ms)


if __name__ == "__main__":
    sys.exit(main())
