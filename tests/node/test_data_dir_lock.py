"""One node process per data directory (``node/data_dir_lock.py``), on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edgechain.node.data_dir_lock import (
    LOCK_FILE,
    DataDirError,
    DataDirInUseError,
    lock_data_dir,
)

HOLD = """
import sys, time
from pathlib import Path
from edgechain.node.data_dir_lock import lock_data_dir
lock_data_dir(Path(sys.argv[1]))
print("locked", flush=True)
time.sleep(600)
"""


def _hold_in_child(data_dir: Path) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    return child


def test_a_second_lock_is_refused_naming_the_holder_until_released(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "dir"  # created by the lock
    lock = lock_data_dir(data_dir)
    assert (data_dir / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    with pytest.raises(
        DataDirInUseError, match=f"in use by another node process \\(pid {os.getpid()}\\)"
    ):
        lock_data_dir(data_dir)
    lock.release()
    lock.release()  # idempotent
    lock_data_dir(data_dir).release()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    child = _hold_in_child(tmp_path)
    try:
        with pytest.raises(DataDirInUseError, match=f"pid {child.pid}"):
            lock_data_dir(tmp_path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    lock_data_dir(tmp_path).release()  # the kernel dropped it with the process


def test_a_child_started_by_the_holder_does_not_keep_it(tmp_path: Path) -> None:
    """The fencing watchdog outlives a killed node on purpose: it must not inherit the
    lock, or the node could not be restarted while its watchdog runs."""
    lock = lock_data_dir(tmp_path)
    child = subprocess.Popen(["sleep", "600"], close_fds=False)  # inherits what it may
    try:
        lock.release()
        lock_data_dir(tmp_path).release()
    finally:
        child.kill()
        child.wait(timeout=30)


def test_a_directory_that_cannot_be_made_is_a_local_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DataDirError, match="cannot lock data directory"):
        lock_data_dir(blocker / "data")
