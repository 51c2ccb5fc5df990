"""State archives: a tar of an app's state directory, optionally with its base image.

The destination unpacks archives that another node made, so unpacking treats them as
peer input: only ``state/...`` members and one ``image.tar`` member are allowed, every
member goes through tarfile's ``data`` filter (no absolute paths, no ``..``, no links
leaving the tree, no devices), and the member count is bounded. Anything else is an
:class:`ArchiveError` (a ``DecodeError``: the peer's fault, never a crash).
"""

from __future__ import annotations

import errno
import shutil
import tarfile
from pathlib import Path

from edgechain.errors import DecodeError, RejectReason
from edgechain.runtime.base import ARCHIVE_IMAGE_MEMBER, ARCHIVE_STATE_PREFIX

MAX_ARCHIVE_MEMBERS = 100_000
COPY_BUFFER_BYTES = 1 << 20
"""tarfile copies with 16 KiB buffers by default; 1 MiB halves the time on 15 MB states."""


class ArchiveError(DecodeError):
    """A state archive that is malformed or tries to escape its directory."""


def write_state_archive(state_dir: Path, out: Path, image_tar: Path | None = None) -> int:
    """Write ``state_dir`` (and ``image_tar``) into the tar file ``out``; return its size."""
    with tarfile.TarFile(out, "w", format=tarfile.PAX_FORMAT, copybufsize=COPY_BUFFER_BYTES) as tar:
        tar.add(state_dir, arcname=ARCHIVE_STATE_PREFIX, recursive=True)
        if image_tar is not None:
            tar.add(image_tar, arcname=ARCHIVE_IMAGE_MEMBER, recursive=False)
    return out.stat().st_size


def _is_state_member(name: str) -> bool:
    return name == ARCHIVE_STATE_PREFIX or name.startswith(ARCHIVE_STATE_PREFIX + "/")


def extract_state_archive(archive: Path, state_dir: Path, image_out: Path | None = None) -> bool:
    """Unpack ``archive`` so that ``state_dir`` holds the saved state.

    ``state_dir`` is replaced atomically (unpacked beside it, then renamed), so a failed
    unpack never leaves a half-written state. Returns True when the archive carried a
    base image, written to ``image_out`` (an archive with an image but no ``image_out``
    is refused).
    """
    staging = state_dir.parent / (state_dir.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    has_image = False
    try:
        try:
            with tarfile.TarFile(archive, "r", copybufsize=COPY_BUFFER_BYTES) as tar:
                for count, member in enumerate(tar, start=1):
                    if count > MAX_ARCHIVE_MEMBERS:
                        raise ArchiveError(RejectReason.ARCHIVE_TOO_MANY_MEMBERS, str(count))
                    if member.name == ARCHIVE_IMAGE_MEMBER and member.isfile():
                        if image_out is None:
                            raise ArchiveError(RejectReason.ARCHIVE_UNEXPECTED_IMAGE)
                        source = tar.extractfile(member)
                        if source is None:
                            raise ArchiveError(RejectReason.ARCHIVE_BAD_IMAGE)
                        with source, image_out.open("wb") as sink:
                            shutil.copyfileobj(source, sink, COPY_BUFFER_BYTES)
                        has_image = True
                    elif _is_state_member(member.name):
                        tar.extract(member, staging, filter="data")
                    else:
                        raise ArchiveError(RejectReason.ARCHIVE_BAD_MEMBER, member.name[:200])
        except (tarfile.TarError, UnicodeError) as exc:
            raise ArchiveError(RejectReason.ARCHIVE_MALFORMED, str(exc)[:200]) from None
        unpacked = staging / ARCHIVE_STATE_PREFIX
        if not unpacked.is_dir():
            raise ArchiveError(RejectReason.ARCHIVE_WITHOUT_STATE)
        _swap_in(unpacked, state_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return has_image


def install_state_dir(staged: Path, state_dir: Path) -> None:
    """Make the complete state tree ``staged`` (a pre-copy's, ``runtime/precopy.py``)
    the app's ``state_dir``: renamed into place, or copied beside it first when it lies
    on another file system. ``state_dir`` is replaced atomically, as by an unpack."""
    try:
        _swap_in(staged, state_dir)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        copy = state_dir.parent / (state_dir.name + ".restoring")
        shutil.rmtree(copy, ignore_errors=True)
        try:
            shutil.copytree(staged, copy, symlinks=True)
            _swap_in(copy, state_dir)
        finally:
            shutil.rmtree(copy, ignore_errors=True)


def _swap_in(tree: Path, state_dir: Path) -> None:
    """Replace ``state_dir`` by ``tree`` (same file system) with two renames."""
    old = state_dir.parent / (state_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    existed = state_dir.exists()
    if existed:
        state_dir.rename(old)
    try:
        tree.rename(state_dir)
    except OSError:
        if existed:
            old.rename(state_dir)  # as it was: the caller decides what happens next
        raise
    shutil.rmtree(old, ignore_errors=True)


def get_tree_size(path: Path) -> int:
    """Total size in bytes of the regular files under ``path`` (0 if it is missing)."""
    total = 0
    if not path.exists():
        return 0
    for entry in path.rglob("*"):
        try:
            if entry.is_file() and not entry.is_symlink():
                total += entry.stat().st_size
        except OSError:
            continue  # a file the app removed while we walked
    return total
