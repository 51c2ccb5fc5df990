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
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from edgechain.runtime.appuser import AppUser
from edgechain.runtime.archive import write_state_archive
from edgechain.runtime.process_group import signal_group

SAVED_ARCHIVE = "saved.tar"
"""In an app's directory: the archive ``save`` wrote (gone again on ``resume``)."""
ACK_FILE = "checkpoint.ack"
"""In the app's run directory (``process.RUN_DIR``): the app's acknowledgement."""
_POLL_S = 0.002


def checkpoint_and_freeze(proc: subprocess.Popen[bytes], ack: Path, timeout_s: float) -> bool:
    """Cooperative checkpoint: SIGUSR1, wait for the app's ack, then SIGSTOP.

    True when the group of ``proc`` is now frozen; False when the app did not create
    ``ack`` within ``timeout_s`` or exited (it then runs on, or is gone).
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
    signal_group(proc.pid, signal.SIGSTOP)
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
