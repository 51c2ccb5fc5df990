"""One node process per data directory.

A data directory is one identity (its ``node.key``) and the apps placed on it. A
second ``edgechain node`` started on the same directory (a service manager's copy
beside a hand-started one, a copy-pasted command line) reaped the first one's apps as
"orphans of an earlier incarnation", SIGKILLing its running counter, and then failed
with a traceback on the transfer port the first one held; had its ports been free, two
processes would have signed as one validator (two blocks for one slot) and run its apps
twice. The daemon therefore takes an exclusive ``flock`` on ``<data_dir>/node.lock``
before it touches anything else there, and holds it for its whole life: the kernel
drops it when the process ends however it ends (kill -9 included), so a restart never
finds a stale lock. The descriptor is not inherited (``O_CLOEXEC``): the fencing
watchdog, which outlives a killed node on purpose, must not keep the directory locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from edgechain.errors import LocalError

LOCK_FILE = "node.lock"
"""Holds the pid of the node that has the lock (for the error message only)."""


class DataDirError(LocalError):
    """The data directory cannot be created or locked (permissions, a full disk)."""


class DataDirInUseError(DataDirError):
    """Another live process holds the data directory's lock."""


@dataclass
class DataDirLock:
    """The held lock; :meth:`release` (or the process's end) gives it up."""

    fd: int | None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None


def lock_data_dir(data_dir: Path) -> DataDirLock:
    """Take ``data_dir``'s lock (creating the directory if needed), or raise
    :class:`DataDirInUseError` naming the process that holds it."""
    path = data_dir / LOCK_FILE
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise DataDirError(f"cannot lock data directory {data_dir}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise DataDirInUseError(
            f"data directory {data_dir} is in use by another node process ({holder}): "
            "two processes on one data directory would sign as one validator and run "
            "its apps twice; stop that one first"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    with contextlib.suppress(OSError):  # the pid is for messages only: a full disk may refuse it
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(fd)


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        pid = int(os.pread(fd, 32, 0).decode().strip())
        return f"pid {pid}"
    return "pid unknown"
