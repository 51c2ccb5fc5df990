"""State archives: a tar of an app's state directory, optionally with its base image.

The destination unpacks archives that another node made, so unpacking treats them as
peer input: only ``state/...`` members and one ``image.tar`` member are allowed, every
member goes through tarfile's ``data`` filter (no absolute paths, no ``..``, no links
leaving the tree, no devices), and the member count is bounded. Anything else is an
:class:`ArchiveError` (a ``DecodeError``: the peer's fault, never a crash).
"""

from __future__ import annotations

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
        old = state_dir.parent / (state_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if state_dir.exists():
            state_dir.rename(old)
        unpacked.rename(state_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return has_image


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
