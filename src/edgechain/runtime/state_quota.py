"""The size limit of a container app's state directory (``AppSpec.state_limit_bytes``).

What can enforce it. The state directory is a host directory bind-mounted at
``/state``. The container engine caps nothing about a bind mount: Docker's and
Podman's ``--storage-opt size=`` caps the container's own root file system, and only
on overlay over XFS with project quotas (or btrfs, zfs), never with the ``vfs`` driver
the nodes' Podman uses; Podman's ``volume create --opt o=size=`` caps a named volume
only on XFS with project quotas (or tmpfs, which lives in memory and would not
survive a node restart). This project's hosts have ext4 root file systems, cgroup v1
and no project quotas, so Podman 4.3 enforces no state size here.

So this module gives the state directory a file system of its own: a sparse ext4
image ``<app dir>/state.img`` of exactly the limit's size, loop-mounted on the state
directory (``nosuid,nodev``). The KERNEL then refuses writes beyond it (``ENOSPC``), as
it would on a full disk; the app can store somewhat less than the limit, never more
(ext4's metadata and journal, kept for crash safety, take a share: measured here, 6.3
of 8 MiB, 53 of 64 MiB and 957 of 1024 MiB are usable). That needs
root and working loop devices (``is_loop_quota_available``, checked once). Elsewhere
nothing can stop the app writing: ``get_state_usage`` measures the directory and says
whether the app is over its limit, for the node to report or stop it.

How a runtime uses it (the state directory's path never changes):

* before starting the app: ``apply_state_quota(state_dir, spec.state_limit_bytes,
  owner=(uid, gid))``. It creates or mounts the image, resizes it when an UPDATE
  changed the limit, and moves what the plain directory holds into it (a restored
  state); a limit of 0 turns a mounted image back into a plain directory.
  ``StateQuotaError`` when the state does not fit the limit: the app is over it.
* before replacing the state (restore of a migration or replica) or deleting the app
  directory: ``discard_state_quota(state_dir)``: unmounted, image deleted (a mount
  point can be neither renamed nor removed).
* ``get_state_usage`` at any time, for stats and reports.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.model import MIN_STATE_LIMIT_BYTES
from edgechain.errors import LocalError
from edgechain.runtime.archive import get_tree_size

IMAGE_NAME = "state.img"
MOUNT_OPTIONS = "loop,nosuid,nodev"
TOOL_TIMEOUT_S = 60.0
LOST_AND_FOUND = "lost+found"
MIN_IMAGE_BYTES = MIN_STATE_LIMIT_BYTES
"""No spec's limit is smaller (validation refuses it); a smaller one here gets this."""


class StateQuotaError(LocalError):
    """The state cannot be given its limit: it does not fit, or a tool failed."""


@dataclass(frozen=True)
class StateUsage:
    """How much state an app holds against its limit."""

    used_bytes: int
    limit_bytes: int
    """0: no limit."""
    enforced: bool
    """True when the kernel refuses writes beyond the limit (a mounted image); False
    when the limit is only measured here."""

    @property
    def is_over(self) -> bool:
        return self.limit_bytes > 0 and self.used_bytes > self.limit_bytes


def get_image_path(state_dir: Path) -> Path:
    """The image beside the state directory, inside the app's directory."""
    return Path(state_dir).parent / IMAGE_NAME


def get_image_bytes(limit_bytes: int) -> int:
    """The image size for a limit: the limit rounded down to whole KiB (``resize2fs``
    counts in KiB), at least ``MIN_IMAGE_BYTES``."""
    return max(limit_bytes // 1024 * 1024, MIN_IMAGE_BYTES)


@functools.cache
def is_loop_quota_available() -> bool:
    """True when this process may loop-mount ext4 images: root, the tools, loop devices
    (checked once; a container without ``/dev/loop-control`` fails here)."""
    tools = ("mkfs.ext4", "e2fsck", "resize2fs", "mount", "umount")
    if os.geteuid() != 0 or not all(shutil.which(t) for t in tools):
        return False
    if not Path("/dev/loop-control").exists():
        return False
    try:
        with tempfile.TemporaryDirectory(prefix="edgechain-quota-probe-") as probe:
            state = Path(probe) / "state"
            state.mkdir()
            apply_state_quota(state, MIN_IMAGE_BYTES, loop_check=False)
            discard_state_quota(state)
    except (StateQuotaError, OSError):
        return False
    return True


def is_mounted(state_dir: Path) -> bool:
    return os.path.ismount(state_dir)


def _run(*argv: str, ok_codes: tuple[int, ...] = (0,)) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StateQuotaError(f"{argv[0]}: {exc}") from exc
    if done.returncode not in ok_codes:
        raise StateQuotaError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()[:300]}")


def _make_image(image: Path, size: int) -> None:
    image.unlink(missing_ok=True)
    with image.open("wb") as f:
        f.truncate(size)  # sparse: costs disk only as the app writes
    image.chmod(0o600)
    # -m 0: no blocks reserved for root, the app gets the whole image.
    _run("mkfs.ext4", "-q", "-F", "-m", "0", "-L", "edgechain-state", str(image))


def _resize_image(image: Path, size: int) -> None:
    """Grow or shrink an unmounted image; StateQuotaError if its data does not fit."""
    # Exit 1: e2fsck fixed something (it recreates lost+found, which _mount removes).
    _run("e2fsck", "-f", "-p", str(image), ok_codes=(0, 1))
    current = image.stat().st_size
    if size > current:
        with image.open("r+b") as f:
            f.truncate(size)
    try:
        _run("resize2fs", str(image), f"{size // 1024}K")
    except StateQuotaError as exc:
        if size > current:
            with image.open("r+b") as f:
                f.truncate(current)
        raise StateQuotaError(f"the state does not fit {size} bytes: {exc}") from exc
    if size < current:
        with image.open("r+b") as f:
            f.truncate(size)


def _mount(image: Path, target: Path) -> None:
    _run("mount", "-t", "ext4", "-o", MOUNT_OPTIONS, str(image), str(target))
    with contextlib.suppress(OSError):  # not part of the app's state
        (target / LOST_AND_FOUND).rmdir()


def _unmount(target: Path) -> None:
    _run("umount", str(target))


def _has_entries(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _move_contents(source: Path, target: Path) -> None:
    """Everything in ``source`` into ``target`` (owners, modes, links kept), then out of
    ``source``; on failure (ENOSPC: it does not fit) ``source`` is left as it was."""
    if not _has_entries(source):
        return
    try:
        _run("cp", "-a", "--", f"{source}/.", f"{target}/")
    except StateQuotaError as exc:
        raise StateQuotaError(f"the state does not fit its limit: {exc}") from exc
    for entry in list(source.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _fill_image(image: Path, state_dir: Path) -> None:
    """Move the plain directory's contents into the (unmounted) image."""
    if not _has_entries(state_dir):
        return
    staging = Path(tempfile.mkdtemp(prefix=".quota-", dir=state_dir.parent))
    try:
        _mount(image, staging)
        try:
            _move_contents(state_dir, staging)
        finally:
            _unmount(staging)
    finally:
        staging.rmdir()


def apply_state_quota(
    state_dir: Path,
    limit_bytes: int,
    *,
    owner: tuple[int, int] | None = None,
    loop_check: bool = True,
) -> bool:
    """Give ``state_dir`` its limit; True when the kernel enforces it from now on,
    False when it is only measured (no limit, or no loop mounts here).

    Idempotent: call it before every start. The plain directory's contents, when it has
    any while unmounted (a state restored into it), replace the image's. ``owner``
    (uid, gid) gets the file system's root, so a non-root app can write there.
    Raises :class:`StateQuotaError` when the state does not fit: the app must not start.
    """
    state_dir = Path(state_dir)
    image = get_image_path(state_dir)
    if limit_bytes <= 0:
        release_state_quota(state_dir)
        return False
    if loop_check and not is_loop_quota_available():
        return False
    state_dir.mkdir(parents=True, exist_ok=True)
    size = get_image_bytes(limit_bytes)
    if is_mounted(state_dir):
        if image.stat().st_size == size:
            _set_owner(state_dir, owner)
            return True
        _unmount(state_dir)
    if _has_entries(state_dir) or not image.exists():
        # The plain directory is the newer state (a restore), or there is no image yet.
        _make_image(image, size)
        try:
            _fill_image(image, state_dir)
        except StateQuotaError:
            image.unlink(missing_ok=True)
            raise
    elif image.stat().st_size != size:
        _resize_image(image, size)
    _mount(image, state_dir)
    _set_owner(state_dir, owner)
    return True


def _set_owner(state_dir: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None:
        os.chown(state_dir, owner[0], owner[1], follow_symlinks=False)


def release_state_quota(state_dir: Path) -> None:
    """Back to a plain directory, contents kept (the limit was lifted); no-op without an
    image."""
    state_dir = Path(state_dir)
    image = get_image_path(state_dir)
    if not is_mounted(state_dir):
        if image.exists() and not _has_entries(state_dir):
            # An image not mounted (after a reboot) holds the state: take it out.
            _mount(image, state_dir)
        else:
            image.unlink(missing_ok=True)
            return
    staging = Path(tempfile.mkdtemp(prefix=".quota-", dir=state_dir.parent))
    try:
        _move_contents(state_dir, staging)
        stat = state_dir.stat()
        _unmount(state_dir)
        _move_contents(staging, state_dir)
        os.chown(state_dir, stat.st_uid, stat.st_gid, follow_symlinks=False)
        state_dir.chmod(stat.st_mode & 0o7777)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    image.unlink(missing_ok=True)


def unmount_state_quota(state_dir: Path) -> None:
    """Unmount the image and keep it (the state in it): the node stops, the app's state
    stays; the next ``apply_state_quota`` mounts it again. No-op when not mounted."""
    state_dir = Path(state_dir)
    if is_mounted(state_dir):
        _unmount(state_dir)


def discard_state_quota(state_dir: Path) -> None:
    """Unmount and delete the image, with the state in it: before a restore replaces
    the state or the app's directory is deleted. No-op without an image."""
    state_dir = Path(state_dir)
    if is_mounted(state_dir):
        _unmount(state_dir)
    get_image_path(state_dir).unlink(missing_ok=True)


def get_state_usage(state_dir: Path, limit_bytes: int) -> StateUsage:
    """The state's size (regular files, as migrations count it) against its limit."""
    return StateUsage(
        used_bytes=get_tree_size(Path(state_dir)),
        limit_bytes=limit_bytes,
        enforced=limit_bytes > 0 and is_mounted(Path(state_dir)),
    )
