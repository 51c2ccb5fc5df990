"""Keep one app from filling its node's disk: the node stops the app that is filling it.

Session 46 tried an app with a bug, one that writes its state without end (no
``state_limit``, none by default), on a 4-node testnet whose node 3 had a 64 MiB disk.
Within seconds the disk was full, the node's next block write failed and it stopped
(exit 75, as a full disk should); the chain took it for down and recovered the app on
node 0, which the app began to fill at 20 MB/s in turn. One buggy app took the fleet
down one node after another.

So the node keeps a reserve of its data directory's file system for itself (its block
store, leases, logs): :func:`compute_reserve`, 5 % of the file system, at least 64 MiB
and at most 1 GiB, never more than a quarter of it. Once a measure pass (about once a
second, ``runtime/manager.py``) finds less free than the reserve, the node stops the
running app whose state directory grew the most since the pass before, if it grew at
least ``MIN_GROWTH_BYTES`` (a writer, not an app that merely holds a large state), and
holds it stopped: reconcile does not start it again while held. One app per pass: the
next pass stops another writer if the disk still fills. An app being handed over to
another node is left to its handover (the planner moves apps off a node whose disk
fills: stopped under the handover, the app would reach neither end). The node never
deletes an app's
state, and an app it holds stays placed here: the chain knows nothing of it (a block
records no local fault, as for ``crash_looping``), so it is neither lost nor moved on to
fill another node. Its operator sees it ``disk_full`` (``GET /runtime/apps``,
``edgechain apps list``) with the figures, and acts: ``edgechain apps stop``, ``update``
or ``rm`` (which frees its state), or frees room on the node. The hold ends once the
free space is back above twice the reserve, or when the app is no longer held here.

Not covered: what an app writes outside its state directory (a process app may write
wherever its user may; a container's writable layer is the engine's), and a writer
faster than the reserve per pass (64 MiB a second at the floor). A container app with a
``state_limit`` (a loop file system of its own on a root node) cannot fill the disk
through its state at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from edgechain.types import AppId

DISK_FULL = "disk_full"
"""The local status of an app this node stopped and holds because it was filling the
node's disk (``GET /runtime/apps``)."""

RESERVE_FRACTION_BP = 500
"""The reserve: 5 % of the file system, within the bounds below."""
MIN_RESERVE_BYTES = 64 * 1024 * 1024
MAX_RESERVE_BYTES = 1024 * 1024 * 1024
MIN_GROWTH_BYTES = 1024 * 1024
"""An app's state must have grown this much since the last pass to be taken for the
writer: below it the disk fills from elsewhere, and stopping the app would not help."""
RELEASE_FACTOR = 2
"""The holds end once the free space is back above this many reserves."""

MIB = 1024 * 1024


def compute_reserve(total_bytes: int) -> int:
    """The bytes of a file system of ``total_bytes`` that apps may not fill (module
    docstring): 5 %, at least 64 MiB, at most 1 GiB, never above a quarter of it."""
    share = total_bytes * RESERVE_FRACTION_BP // 10_000
    return min(max(share, MIN_RESERVE_BYTES), MAX_RESERVE_BYTES, total_bytes // 4)


@dataclass(frozen=True)
class DiskSpace:
    free_bytes: int
    """What an unprivileged writer may still use (``f_bavail``)."""
    total_bytes: int

    @property
    def reserve_bytes(self) -> int:
        """What the node keeps of this file system for itself (:func:`compute_reserve`)."""
        return compute_reserve(self.total_bytes)

    def get_writable(self) -> int:
        """What the node may still write without going under its reserve: how much a
        transfer may land here (``runtime/transfer_server.py``)."""
        return max(0, self.free_bytes - self.reserve_bytes)

    def get_state_room(self) -> int:
        """The app state this node can take in (``ResourceReport.state_room_bytes``):
        the free space above twice the reserve, the level at which the guard's holds
        end, so that a state the planner sends here leaves the node above the level
        at which its guard stops apps. Session 46 saw a 300 MB state planned onto a
        node with a 256 MiB disk: each retry of the transfer (22 seen) filled that disk
        and failed."""
        return max(0, self.free_bytes - RELEASE_FACTOR * self.reserve_bytes)


def read_disk_space(path: Path) -> DiskSpace:
    """The free and total bytes of the file system holding ``path`` (one ``statvfs``)."""
    stat = os.statvfs(path)
    return DiskSpace(stat.f_bavail * stat.f_frsize, stat.f_blocks * stat.f_frsize)


@dataclass(frozen=True)
class StateSize:
    """One app's state directory as the last measure saw it."""

    app: AppId
    running: bool
    state_bytes: int


@dataclass(frozen=True)
class DiskHold:
    """Why the node holds an app stopped."""

    free_bytes: int
    reserve_bytes: int
    state_bytes: int
    growth_bytes: int

    def describe(self) -> str:
        return (
            f"stopped by its node: the disk had {self.free_bytes // MIB} MiB free, under"
            f" the node's reserve of {self.reserve_bytes // MIB} MiB, and this app's state"
            f" grew most ({self.growth_bytes // MIB} MiB in one pass, now"
            f" {self.state_bytes // MIB} MiB); held until"
            f" {RELEASE_FACTOR * self.reserve_bytes // MIB} MiB are free"
        )


class DiskGuard:
    """The apps this node holds stopped for filling its disk (module docstring).

    Pure but for ``read_space``: :meth:`check` takes the measure's state sizes and
    returns the app to stop, if any; the app manager stops it."""

    def __init__(
        self, path: Path, read_space: Callable[[Path], DiskSpace] = read_disk_space
    ) -> None:
        self.path = path
        self._read_space = read_space
        self._holds: dict[AppId, DiskHold] = {}
        self._last_sizes: dict[AppId, int] = {}

    def is_held(self, app: AppId) -> bool:
        return app in self._holds

    def get_hold(self, app: AppId) -> DiskHold | None:
        return self._holds.get(app)

    def release(self, app: AppId) -> None:
        """Forget ``app``'s hold (it could not be stopped: the next pass decides again)."""
        self._holds.pop(app, None)

    def check(
        self, sizes: Iterable[StateSize], busy: Collection[AppId] = ()
    ) -> tuple[AppId, DiskHold] | None:
        """One measure pass: end the holds once there is room again, forget apps no
        longer here, and name the app to stop and hold when the disk is under its
        reserve. ``sizes``: every app held here, with its state size if it runs;
        ``busy``: apps being handed over to another node, never named (stopped under
        its handover, an app would reach neither end: the handover takes it away)."""
        sizes = list(sizes)
        present = {s.app for s in sizes}
        for app in [a for a in self._holds if a not in present]:
            del self._holds[app]
        growth = {
            s.app: s.state_bytes - self._last_sizes.get(s.app, s.state_bytes)
            for s in sizes
            if s.running
        }
        self._last_sizes = {s.app: s.state_bytes for s in sizes if s.running}
        space = self._read_space(self.path)
        reserve = space.reserve_bytes
        if space.free_bytes >= RELEASE_FACTOR * reserve:
            self._holds.clear()
            return None
        if space.free_bytes >= reserve:
            return None
        writers = [
            (grown, bytes(app), app)
            for app, grown in growth.items()
            if grown >= MIN_GROWTH_BYTES and app not in self._holds and app not in busy
        ]
        if not writers:
            return None
        grown, _, app = max(writers)
        state = next(s.state_bytes for s in sizes if s.app == app)
        hold = DiskHold(space.free_bytes, reserve, state, grown)
        self._holds[app] = hold
        return app, hold
