"""A small file system of its own for a directory, to fill and free: "full disk" as a fault.

:func:`mount_small_disk` loop-mounts a fresh sparse ext4 image of ``size_bytes`` on a
directory (``nosuid,nodev``, no blocks reserved for root), so what a process writes
there fails with ``ENOSPC`` (SQLite: ``database or disk is full``) once the image is
full, exactly as on a device whose disk filled up. :func:`fill` writes a filler file
until the file system refuses more (or leaves ``leave_bytes`` free), :func:`free`
deletes it, :func:`unmount` takes the file system away again (image deleted).

Mount the directory before anything writes into it: a node's data directory must be
on the small file system from the node's start (the mount hides whatever the
directory held, and a running process's open files stay on the old file system).
:func:`mount_small_disk` therefore refuses a directory that is not empty.

Root only, with working loop devices (the same needs as ``runtime/state_quota.py``,
whose probe :func:`is_small_disk_available` reuses); otherwise every function raises
:class:`SmallDiskError` with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from pathlib import Path

from edgechain.errors import LocalError
from edgechain.runtime.state_quota import is_loop_quota_available

FILLER_NAME = ".small-disk-filler"
"""The filler file :func:`fill` writes at the file system's root."""
IMAGE_SUFFIX = ".small-disk.img"
"""The image lives beside the mount point: ``<parent>/.<name>.small-disk.img``."""
MOUNT_OPTIONS = "loop,nosuid,nodev"
MIN_SIZE_BYTES = 4 * 1024 * 1024
"""Smaller ext4 images leave almost nothing after the journal and metadata."""
TOOL_TIMEOUT_S = 60.0
_CHUNK = 1024 * 1024
_MIN_CHUNK = 4096
"""One block: the filler is topped up to the last one."""
BLOCK_SIZE = 4096
"""As on real disks. mkfs.ext4 would pick 1 KiB blocks for an image this small, and
there SQLite's WAL index (``-shm``, mmapped, allocated one byte per 4 KiB page)
would get holes a full file system cannot fill: SIGBUS instead of "disk full"."""


class SmallDiskError(LocalError):
    """A small disk cannot be set up or taken down here (not root, no loop devices, a
    tool failed, the directory is not empty or not a small disk)."""


def is_small_disk_available() -> bool:
    """True when this process may loop-mount ext4 images (root, tools, loop devices)."""
    return is_loop_quota_available()


def get_image_path(path: Path) -> Path:
    path = Path(path)
    return path.parent / f".{path.name}{IMAGE_SUFFIX}"


def is_small_disk(path: Path) -> bool:
    """True when ``path`` is a mount point with our image beside it."""
    return os.path.ismount(path) and get_image_path(path).exists()


def mount_small_disk(path: Path, size_bytes: int) -> None:
    """Give the (new or empty) directory ``path`` an ext4 file system of ``size_bytes``.

    The journal and metadata take a share: 3.3 of 8 MiB, 10.7 of 16 MiB and 25.3 of
    32 MiB are usable.
    """
    path = Path(path)
    if size_bytes < MIN_SIZE_BYTES:
        raise SmallDiskError(f"a small disk needs at least {MIN_SIZE_BYTES} bytes")
    _check_available()
    path.mkdir(parents=True, exist_ok=True)
    if os.path.ismount(path):
        raise SmallDiskError(f"{path} is already a mount point")
    if any(path.iterdir()):
        raise SmallDiskError(f"{path} is not empty: mount the small disk before it is used")
    image = get_image_path(path)
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(size_bytes)  # sparse: costs disk only as it fills
    image.chmod(0o600)
    try:
        _run(
            "mkfs.ext4",
            "-q",
            "-F",
            "-m",
            "0",
            "-b",
            str(BLOCK_SIZE),
            "-L",
            "edgechain-small",
            str(image),
        )
        _run("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(path))
    except SmallDiskError:
        image.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        (path / "lost+found").rmdir()


def fill(path: Path, leave_bytes: int = 0) -> int:
    """Append to the filler file until the file system is full (or only about
    ``leave_bytes`` are left); return the bytes written. Repeatable: a second call
    tops up what the file system's users freed meanwhile."""
    path = Path(path)
    _check_small_disk(path)
    written = 0
    chunk = _CHUNK
    zeros = bytes(_CHUNK)
    with (path / FILLER_NAME).open("ab", buffering=0) as f:
        while chunk >= _MIN_CHUNK:
            room = get_free_bytes(path) - leave_bytes
            if room <= 0:
                break
            size = min(chunk, room)
            try:
                written += f.write(zeros[:size]) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                chunk //= 2
        with contextlib.suppress(OSError):  # the data is zeros; nothing to keep
            os.fsync(f.fileno())
    return written


def free(path: Path) -> int:
    """Delete the filler file; return the bytes it held (0 without one)."""
    path = Path(path)
    _check_small_disk(path)
    filler = path / FILLER_NAME
    try:
        size = filler.stat().st_size
        filler.unlink()
    except FileNotFoundError:
        return 0
    return size


def get_free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s file system."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def unmount(path: Path) -> None:
    """Unmount the small disk on ``path`` and delete its image (and what it held).
    No-op when ``path`` is not one; SmallDiskError while a process still uses it."""
    path = Path(path)
    image = get_image_path(path)
    if os.path.ismount(path):
        if not image.exists():
            raise SmallDiskError(f"{path} is a mount point but not a small disk")
        _run("umount", str(path))
    image.unlink(missing_ok=True)


def _check_available() -> None:
    if os.geteuid() != 0:
        raise SmallDiskError("a small disk needs root (loop mounts)")
    if not is_small_disk_available():
        raise SmallDiskError("no loop devices or ext4 tools here (mkfs.ext4, mount)")


def _check_small_disk(path: Path) -> None:
    if not is_small_disk(path):
        raise SmallDiskError(f"{path} is not a small disk (see mount_small_disk)")


def _run(*argv: str) -> None:
    if shutil.which(argv[0]) is None:
        raise SmallDiskError(f"{argv[0]} not found")
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SmallDiskError(f"{argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise SmallDiskError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()[:300]}")
