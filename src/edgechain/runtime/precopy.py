"""Iterative pre-copy, the origin's half: copy a running app's state in rounds, then
freeze it only for what changed (issue 15: beat the paper's Table 3 at 142 MB).

The paper (§3.3, §4.2) and the plain migration here stop or freeze the app, archive its
whole state, stream it and unpack it: the app is down for all of it (about 0.9 s for
142 MB on loopback here, 20.3 s in the paper). With pre-copy (the live-migration
technique of VMs, applied to a state directory):

1. while the app runs, each round reads every file of its state directory in blocks of
   ``state_delta.BLOCK_BYTES``, takes a CRC-32 of each block, and writes a delta
   (``runtime/state_delta.py``) of the blocks whose CRC or length differs from what the
   destination holds, i.e. from what earlier rounds sent (all of it in the first);
2. rounds go on while they shrink, until one carries little (:func:`is_converged`);
3. then the app is frozen (its checkpoint hook and SIGSTOP, or a graceful stop), a
   FINAL round sends what changed meanwhile and lists the whole tree, and the
   destination starts the app from its staged copy.

What a round sends is exactly what it read and hashed: a block torn by a write in
flight is sent torn and sent again once its CRC differs. The FINAL round re-reads every
block with the app frozen, so the destination's copy is the frozen state, whatever the
app did before; no modification time is trusted (an mmap write need not move it).
A changed block with an unchanged CRC-32 and length would be missed: 2^-32 per changed
block for accidental changes; an app forging one only corrupts its own state.

The walk runs as root over a directory the app writes to, so it goes by directory file
descriptors without following symlinks (``os.fwalk``) and opens each file
``O_NOFOLLOW``: an app cannot make root read what lies outside its state. A state
holding anything but directories and single-link regular files is
:class:`PrecopyUnsupportedError` and migrates the plain way.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from edgechain.runtime.base import AppRuntimeError
from edgechain.runtime.state_delta import BLOCK_BYTES, DeltaWriter

MAX_ROUNDS = 6
"""Rounds while the app runs, at most (the destination refuses more)."""
SMALL_ROUND_BYTES = 4 * 1024 * 1024
"""A round this small ends the pre-copy: the frozen round will be smaller still."""
MIN_STATE_BYTES = 8 * 1024 * 1024
"""Below this a plain migration is as fast: pre-copy only pays for larger states."""


class PrecopyUnsupportedError(AppRuntimeError):
    """The state holds something a pre-copy does not carry (symlink, device, FIFO,
    hard link): the app migrates the plain way."""


@dataclass(frozen=True)
class SentFile:
    """What the destination holds of one file: its size and each block's CRC-32."""

    size: int
    crcs: tuple[int, ...]


@dataclass(frozen=True)
class Round:
    """One round written to a delta file."""

    files: Mapping[str, SentFile]
    """The whole tree as this round leaves the destination holding it."""
    changed_bytes: int
    """Bytes of the blocks this round carries."""
    delta_bytes: int
    """Size of the delta file."""


def write_round(state_dir: Path, sent: Mapping[str, SentFile], out: Path, *, final: bool) -> Round:
    """Read ``state_dir`` and write into ``out`` the delta from ``sent`` (what the
    destination holds) to the state as read now. Raises ``PrecopyUnsupportedError`` for
    what a delta cannot carry, and ``OSError`` when the state cannot be read."""
    files: dict[str, SentFile] = {}
    changed = 0
    with out.open("wb") as sink:
        writer = DeltaWriter(sink, final=final)
        for top, dirnames, filenames, dirfd in os.fwalk(state_dir, follow_symlinks=False):
            prefix = os.path.relpath(top, state_dir)
            prefix = "" if prefix == "." else prefix + "/"
            for name in sorted(dirnames):
                try:
                    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed since listed (only while the app runs)
                writer.add_dir(prefix + name, st.st_mode)
            for name in sorted(filenames):
                path = prefix + name
                result = _write_file(writer, dirfd, name, path, sent.get(path))
                if result is None:
                    continue
                files[path] = result[0]
                changed += result[1]
            dirnames.sort()  # parents before children, deterministic order
        writer.close()
        size = sink.tell()
    return Round(files, changed, size)


def _write_file(
    writer: DeltaWriter, dirfd: int, name: str, path: str, before: SentFile | None
) -> tuple[SentFile, int] | None:
    """Add one file to the delta: (what the destination will hold, bytes sent), or None
    when it is gone or became a directory since it was listed (a running app's doing:
    the frozen final round sees the tree as it stays)."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dirfd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a symlink, a socket
            raise PrecopyUnsupportedError(f"{path}: not a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            return None
        if not stat.S_ISREG(st.st_mode):
            raise PrecopyUnsupportedError(f"{path}: not a regular file")
        if st.st_nlink > 1:
            raise PrecopyUnsupportedError(f"{path}: a hard link")
        writer.begin_file(path, st.st_mode)
        crcs: list[int] = []
        size = changed = 0
        buffer = bytearray(BLOCK_BYTES)
        view = memoryview(buffer)
        while True:
            # Read a whole block (a short read mid-file would split it differently).
            got = 0
            while got < BLOCK_BYTES and (n := os.readv(fd, [view[got:]])):
                got += n
            if not got:
                break
            block = view[:got]
            crc = zlib.crc32(block)
            index = len(crcs)
            crcs.append(crc)
            if not _is_held(before, index, got, crc):
                writer.add_block(index, block)
                changed += got
            size += got
            if got < BLOCK_BYTES:
                break
        writer.end_file(size)
        return SentFile(size, tuple(crcs)), changed
    finally:
        os.close(fd)


def _is_held(before: SentFile | None, index: int, length: int, crc: int) -> bool:
    """Does the destination hold block ``index`` with this length and CRC already?"""
    if before is None or index >= len(before.crcs):
        return False
    held = min(BLOCK_BYTES, before.size - index * BLOCK_BYTES)
    return held == length and before.crcs[index] == crc


def is_converged(rounds: int, changed_bytes: int, previous_changed: int | None) -> bool:
    """After ``rounds`` rounds (the last carried ``changed_bytes``): freeze now?

    Yes once a round was small, once rounds stop shrinking (the app rewrites its state
    as fast as we copy it: more rounds would not shorten the freeze), or at the cap.
    """
    if rounds >= MAX_ROUNDS or changed_bytes <= SMALL_ROUND_BYTES:
        return True
    return previous_changed is not None and changed_bytes >= previous_changed
