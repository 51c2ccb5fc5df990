"""Saving a process app for migration: the checkpoint hook and the state archive.

Migration (paper §3.3, §4.2). The paper's CRIU path freezes a container and ships only
its state; the standard path stops it and ships everything. Here
``ProcessRuntime.save`` either

* uses the app's *cooperative checkpoint hook* when the app advertises one (a
  ``.checkpoint-hook`` file in its state dir): SIGUSR1 to the group, wait for the app
  to touch ``EDGECHAIN_CHECKPOINT_ACK``, then SIGSTOP the group
  (:func:`checkpoint_and_freeze`). The app stays frozen in memory, like a CRIU dump
  with ``--leave-running`` off, and a failed migration resumes it with SIGCONT at
  once; or
* stops the app gracefully: SIGTERM to the group, ``stop_grace_s`` to exit, then
  SIGKILL (``process_group.end_group``). A failed migration restarts it from the
  untouched state dir.

Either way only the state dir is archived (tar, :func:`write_archive_locked_out`), so
the payload is the app's state, like CRIU's small checkpoint, never an image. Root
writes that archive while the app user is locked out of the state dir.

A state replica (``ProcessRuntime.snapshot``, ``runtime/replica.py``) needs the same
archive of a running app without ending it: :func:`archive_while_frozen` asks the app
to persist (the hook, when it has one), freezes its group, waits until every process is
really stopped (a write in flight finishes first), archives, and lets it run again.
The app is frozen only for the archive; what it costs is measured (``paused_ms``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgechain.runtime.app_processes import read_stat_fields
from edgechain.runtime.appuser import AppUser
from edgechain.runtime.archive import write_state_archive
from edgechain.runtime.base import AppRuntimeError
from edgechain.runtime.process_group import signal_group
from edgechain.types import AppId

SAVED_ARCHIVE = "saved.tar"
"""In an app's directory: the archive ``save`` wrote (gone again on ``resume``)."""
ACK_FILE = "checkpoint.ack"
"""In the app's run directory (``process_launch.RUN_DIR``): the app's acknowledgement."""
SNAPSHOT_PREFIX = "snapshot-"
"""In an app's directory: ``snapshot-<random>.tar``, a replica snapshot being sent (the
caller deletes it)."""
_POLL_S = 0.002
_STOP_POLL_S = 0.0002
"""A group stops within microseconds: poll finely, the app is frozen meanwhile."""
_STOPPED_STATES = frozenset("TtZX")
"""/proc states of a process that cannot run: stopped, traced, zombie, dead."""


@dataclass(frozen=True)
class StateSnapshot:
    """A copy of an app's state taken while it runs on (for a replica): an archive in
    ``save``'s format, so ``restore`` and ``extract_state_archive`` take it."""

    app: AppId
    archive: Path
    raw_bytes: int
    """Size of the archive file (uncompressed)."""
    paused_ms: float
    """How long the app's processes were frozen for the copy (0 when not running)."""
    frozen: bool
    """True: the app was running and was frozen for the copy; False: it was archived as
    it stood (stopped, or paused by someone else, and left so)."""


def checkpoint_and_freeze(
    proc: subprocess.Popen[bytes], ack: Path, timeout_s: float, state_dir: str | None = None
) -> bool:
    """Cooperative checkpoint: SIGUSR1, wait for the app's ack, then SIGSTOP.

    True when the group of ``proc`` is now frozen; False when the app did not create
    ``ack`` within ``timeout_s`` or exited (it then runs on, or is gone). ``state_dir``:
    the copy's (``app_processes``); its processes outside the group are stopped too.
    """
    ack.unlink(missing_ok=True)
    # The whole group gets SIGUSR1: it also ends a pending `sleep` in a shell app, so
    # the trap runs at once instead of after the sleep.
    if not signal_group(proc.pid, signal.SIGUSR1):
        return False
    deadline = time.monotonic() + timeout_s
    while not ack.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            return False
        time.sleep(_POLL_S)
    signal_group(proc.pid, signal.SIGSTOP, state_dir)
    return True


def write_archive_locked_out(state_dir: Path, archive: Path, user: AppUser | None) -> int:
    """Write ``state_dir`` into the tar file ``archive`` with ``user`` (the app user,
    None: no drop) locked out of it meanwhile; return the archive's size."""
    with _locked_out(state_dir, user):
        return write_state_archive(state_dir, archive)


@contextlib.contextmanager
def _locked_out(state: Path, user: AppUser | None) -> Iterator[None]:
    """Root reads the state dir by path while it archives it; other apps share the
    app user, so the dir is root's (0700) meanwhile: none of them can swap a
    directory for a symlink under the walk and have root archive what it points to."""
    if user is None:
        yield
        return
    os.chown(state, os.geteuid(), os.getegid(), follow_symlinks=False)
    os.chmod(state, 0o700)  # the app may have opened it up; only root's parent holds it
    try:
        yield
    finally:
        os.chown(state, user.uid, user.gid, follow_symlinks=False)


def archive_while_frozen(
    proc: subprocess.Popen[bytes] | None,
    state_dir: Path,
    archive: Path,
    user: AppUser | None,
    *,
    ack: Path | None,
    timeout_s: float,
) -> tuple[int, float]:
    """Archive ``state_dir`` into ``archive`` with the app's group frozen, then let the
    group run again; return the archive's size and how long the group was frozen (ms).

    ``proc``: the group's leader, None when the app does not run (archived as it is).
    A leader someone else stopped (the fencing watchdog, ``runtime/watchdog.py``) is
    archived as it is too, and never continued here. ``ack``: the app advertises the
    checkpoint hook: it is first asked to persist (running on meanwhile, for up to
    ``timeout_s``), else it is just frozen. A group that does not stop within
    ``timeout_s`` is an ``AppRuntimeError`` (resumed).
    """
    if proc is None or proc.poll() is not None or _is_stopped(proc.pid):
        return write_archive_locked_out(state_dir, archive, user), 0.0
    # The copy's processes outside its group (app_processes) freeze and thaw with it.
    copy = os.path.abspath(state_dir)
    if ack is None or not checkpoint_and_freeze(proc, ack, timeout_s, copy):
        if proc.poll() is not None:  # exited while asked to persist
            return write_archive_locked_out(state_dir, archive, user), 0.0
        signal_group(proc.pid, signal.SIGSTOP, copy)
    start = time.perf_counter()
    try:
        _wait_stopped(proc.pid, timeout_s)
        size = write_archive_locked_out(state_dir, archive, user)
    finally:
        signal_group(proc.pid, signal.SIGCONT, copy)
    return size, (time.perf_counter() - start) * 1000.0


def _wait_stopped(pgid: int, timeout_s: float) -> None:
    """Wait until every process of group ``pgid`` is stopped (SIGSTOP takes effect
    when a process next leaves the kernel: a write in flight completes first)."""
    deadline = time.monotonic() + timeout_s
    while not _is_group_stopped(pgid):
        if time.monotonic() > deadline:
            raise AppRuntimeError(f"process group {pgid} did not stop within {timeout_s:g} s")
        time.sleep(_STOP_POLL_S)


def _is_stopped(pid: int) -> bool:
    return _read_state(pid)[0] in _STOPPED_STATES


def _read_state(pid: int) -> tuple[str, int]:
    """The state letter and the process group of ``pid`` ("" when it is gone)."""
    fields = read_stat_fields(pid)
    if fields is None:
        return "", 0
    return fields[0].decode(), int(fields[2])


def _get_children(pid: int) -> list[int]:
    """The children of ``pid``, from /proc (psutil's full scan where the kernel lacks
    ``/proc/PID/task/TID/children``)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        return [
            int(child)
            for tid in tasks
            for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        ]
    except FileNotFoundError:
        if not Path(f"/proc/{pid}").exists():
            return []
    except OSError:
        return []
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []


def _is_group_stopped(pgid: int) -> bool:
    """Every process of the group, the leader and what it forked, is stopped (or gone,
    or a zombie), or is a shell waiting for its stopped vfork child (it cannot run)."""
    pending = [pgid]
    while pending:
        pid = pending.pop()
        state, group = _read_state(pid)
        children = _get_children(pid)
        if group == pgid and _may_run(state, children):
            return False
        pending.extend(children)
    return True


def _may_run(state: str, children: list[int]) -> bool:
    if not state or state in _STOPPED_STATES:
        return False
    # vfork: until its child execs, the parent waits in the kernel (uninterruptible),
    # and a stopped child keeps it there.
    return state != "D" or not any(_is_stopped(child) for child in children)
