"""State deltas: the payload of a pre-copy migration round (``runtime/precopy.py``).

A pre-copy migration (issue 15, beating the paper's Table 3 at 142 MB: §4.2 freezes
the app for its whole checkpoint, save and transfer) copies an app's state directory
while the app runs, in rounds, and freezes the app only for the last round, which
carries what changed since the previous one. Each round is one *delta* file::

    delta = magic "ESD1" || flags:u8 (FINAL) || entry* || END:u8 || entries:u32
    entry = DIR:u8  || path_len:u16 || path || mode:u16
          | FILE:u8 || path_len:u16 || path || mode:u16 || size:u64 || blocks:u32
                    || (index:u32 || length:u32 || data[length])*

Paths are relative, '/'-separated UTF-8. A FILE entry says the file is ``size`` bytes
long now and carries the blocks of :data:`BLOCK_BYTES` that differ from what the
destination holds (all of them the first time). A FINAL delta lists every directory
and file of the state, so whatever the destination staged that it does not list is
removed: the staged tree is then exactly the origin's frozen state.

The destination applies deltas another node made, into a private staging directory
(:class:`StagedTree`), so everything read is peer input: paths may not be absolute,
hold ``..``, ``.``, empty components or NUL; blocks must lie inside their file, in
order, each full-length but the last; the entry count and the staged bytes are bounded.
A breach is a :class:`DeltaError` (a ``DecodeError``: the peer's fault, never a crash).
Modes keep only the permission bits an unpacked tar would (tarfile's ``data`` filter:
no setuid, setgid, sticky, group or other write), plus the owner's own access.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from edgechain.errors import DecodeError, RejectReason

DELTA_MAGIC = b"ESD1"
BLOCK_BYTES = 1024 * 1024
"""Granularity of change detection and transfer: a changed byte resends its block."""
FLAG_FINAL = 0x01
MAX_PATH_BYTES = 4096
MAX_DEPTH = 128

_TAG_END = 0
_TAG_DIR = 1
_TAG_FILE = 2
_HEAD = struct.Struct(">4sB")
_ENTRY = struct.Struct(">BH")
_MODE = struct.Struct(">H")
_FILE = struct.Struct(">QI")
_BLOCK = struct.Struct(">II")
_COUNT = struct.Struct(">I")


class DeltaError(DecodeError):
    """A state delta that is malformed, escapes its directory or exceeds its bounds."""


# --- writing (the origin) ----------------------------------------------------------------


class DeltaWriter:
    """Writes one delta file entry by entry; a file's blocks stream straight to disk
    (its header is patched once its size and block count are known)."""

    def __init__(self, out: BinaryIO, *, final: bool) -> None:
        self._out = out
        self._entries = 0
        self._file_head: int | None = None
        self._blocks = 0
        out.write(_HEAD.pack(DELTA_MAGIC, FLAG_FINAL if final else 0))

    def add_dir(self, path: str, mode: int) -> None:
        self._end_file()
        self._write_entry(_TAG_DIR, path, mode)

    def begin_file(self, path: str, mode: int) -> None:
        """Start a FILE entry; then ``add_block`` each changed block, in order."""
        self._end_file()
        self._write_entry(_TAG_FILE, path, mode)
        self._file_head = self._out.tell()
        self._out.write(_FILE.pack(0, 0))
        self._blocks = 0

    def add_block(self, index: int, data: bytes | memoryview) -> None:
        if self._file_head is None:
            raise ValueError("add_block outside a file entry")
        self._out.write(_BLOCK.pack(index, len(data)))
        self._out.write(data)
        self._blocks += 1

    def end_file(self, size: int) -> None:
        """Close the open FILE entry: the file is ``size`` bytes long."""
        if self._file_head is None:
            raise ValueError("end_file outside a file entry")
        end = self._out.tell()
        self._out.seek(self._file_head)
        self._out.write(_FILE.pack(size, self._blocks))
        self._out.seek(end)
        self._file_head = None

    def close(self) -> None:
        self._end_file()
        self._out.write(bytes([_TAG_END]) + _COUNT.pack(self._entries))

    def _end_file(self) -> None:
        if self._file_head is not None:
            raise ValueError("a file entry was left open")

    def _write_entry(self, tag: int, path: str, mode: int) -> None:
        raw = path.encode("utf-8")
        self._out.write(_ENTRY.pack(tag, len(raw)) + raw + _MODE.pack(mode & 0o7777))
        self._entries += 1


# --- applying (the destination) ----------------------------------------------------------


@dataclass
class StagedTree:
    """The destination's staging directory of one pre-copy migration, and what it holds.

    ``root`` is created with the first delta applied, private to this node (no app can
    write there), so plain path operations under it are safe; every path still goes
    through the checks. A plain migration never creates it.
    """

    root: Path
    max_bytes: int
    max_entries: int
    sizes: dict[str, int] = field(default_factory=dict)
    """Size of every staged file, by relative path."""
    dirs: set[str] = field(default_factory=set)
    children: dict[str, set[str]] = field(default_factory=dict)
    """Directory ("" for the root) -> the paths staged directly in it: removing a
    directory costs its subtree, not the whole tree (a delta is peer input, and a
    quadratic walk over 100,000 entries would stall the node)."""
    staged_bytes: int = 0
    """The sum of ``sizes``, kept as they change (summed per file it was quadratic)."""
    created: bool = False

    def create(self) -> None:
        """Make ``root`` (once), fresh: anything left there by a crash is removed."""
        if not self.created:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root.mkdir(mode=0o700, parents=True)
            self.created = True

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def apply_state_delta(delta: Path, tree: StagedTree) -> bool:
    """Apply the delta file ``delta`` to ``tree``; return True when it was FINAL (the
    tree is then exactly the origin's state). Raises :class:`DeltaError`."""
    tree.create()
    with delta.open("rb") as source:
        reader = _Reader(source)
        magic, flags = _HEAD.unpack(reader.take(_HEAD.size))
        if magic != DELTA_MAGIC or flags & ~FLAG_FINAL:
            raise DeltaError(RejectReason.DELTA_MALFORMED, "bad header")
        final = bool(flags & FLAG_FINAL)
        listed_dirs: set[str] = set()
        listed_files: set[str] = set()
        entries = 0
        while True:
            (tag,) = reader.take(1)
            if tag == _TAG_END:
                (count,) = _COUNT.unpack(reader.take(_COUNT.size))
                if count != entries or source.read(1):
                    raise DeltaError(RejectReason.DELTA_MALFORMED, "bad end")
                break
            entries += 1
            if entries > tree.max_entries:
                raise DeltaError(RejectReason.DELTA_TOO_MANY_ENTRIES, str(entries))
            path = _read_path(reader)
            (mode,) = _MODE.unpack(reader.take(_MODE.size))
            if tag == _TAG_DIR:
                _apply_dir(tree, path, mode)
                listed_dirs.add(path)
            elif tag == _TAG_FILE:
                _apply_file(tree, reader, path, mode)
                listed_files.add(path)
            else:
                raise DeltaError(RejectReason.DELTA_MALFORMED, f"entry tag {tag}")
            if len(tree.sizes) + len(tree.dirs) > tree.max_entries:
                raise DeltaError(RejectReason.DELTA_TOO_MANY_ENTRIES, "staged tree")
    if final:
        _prune(tree, listed_dirs, listed_files)
    return final


class _Reader:
    def __init__(self, source: BinaryIO) -> None:
        self.source = source

    def take(self, size: int) -> bytes:
        data = self.source.read(size)
        if len(data) != size:
            raise DeltaError(RejectReason.DELTA_MALFORMED, "truncated")
        return data

    def copy_to(self, fd: int, offset: int, size: int) -> None:
        while size:
            data = self.take(min(size, BLOCK_BYTES))
            os.pwrite(fd, data, offset)
            offset += len(data)
            size -= len(data)


def _read_path(reader: _Reader) -> str:
    (size,) = struct.unpack(">H", reader.take(2))
    if size == 0 or size > MAX_PATH_BYTES:
        raise DeltaError(RejectReason.DELTA_BAD_PATH, f"{size} bytes")
    try:
        path = reader.take(size).decode("utf-8")
    except UnicodeDecodeError:
        raise DeltaError(RejectReason.DELTA_BAD_PATH, "not UTF-8") from None
    parts = path.split("/")
    if "\0" in path or len(parts) > MAX_DEPTH or any(p in ("", ".", "..") for p in parts):
        raise DeltaError(RejectReason.DELTA_BAD_PATH, path[:200])
    return path


def _get_parent(path: str) -> str:
    return path.rpartition("/")[0]


def _check_parent(tree: StagedTree, path: str) -> None:
    parent = _get_parent(path)
    if parent and parent not in tree.dirs:
        raise DeltaError(RejectReason.DELTA_BAD_PATH, f"{path[:200]}: parent not listed first")


def _add_entry(tree: StagedTree, path: str) -> None:
    tree.children.setdefault(_get_parent(path), set()).add(path)


def _remove(tree: StagedTree, path: str) -> None:
    """Remove whatever is staged at ``path`` (a file, or a directory and its contents)."""
    if path in tree.dirs:
        shutil.rmtree(tree.root / path)
        stack = [path]
        while stack:
            current = stack.pop()
            tree.dirs.discard(current)
            for child in tree.children.pop(current, set()):
                if child in tree.dirs:
                    stack.append(child)
                else:
                    tree.staged_bytes -= tree.sizes.pop(child, 0)
    elif path in tree.sizes:
        (tree.root / path).unlink()
        tree.staged_bytes -= tree.sizes.pop(path)
    else:
        return
    tree.children.get(_get_parent(path), set()).discard(path)


def _apply_dir(tree: StagedTree, path: str, mode: int) -> None:
    _check_parent(tree, path)
    if path in tree.sizes:
        _remove(tree, path)
    target = tree.root / path
    if path not in tree.dirs:
        target.mkdir()
        tree.dirs.add(path)
        _add_entry(tree, path)
    # tarfile's data filter keeps no group/other write and no special bits.
    target.chmod((mode & 0o755) | 0o700)


def _apply_file(tree: StagedTree, reader: _Reader, path: str, mode: int) -> None:
    _check_parent(tree, path)
    size, blocks = _FILE.unpack(reader.take(_FILE.size))
    if tree.staged_bytes - tree.sizes.get(path, 0) + size > tree.max_bytes:
        raise DeltaError(RejectReason.PAYLOAD_TOO_LARGE, f"staged state over {tree.max_bytes}")
    if path in tree.dirs:
        _remove(tree, path)
    fd = os.open(tree.root / path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        tree.staged_bytes += size - tree.sizes.get(path, 0)
        tree.sizes[path] = size
        _add_entry(tree, path)
        os.ftruncate(fd, size)
        last = -1
        for _ in range(blocks):
            index, length = _BLOCK.unpack(reader.take(_BLOCK.size))
            start = index * BLOCK_BYTES
            if index <= last or start >= size or length != min(BLOCK_BYTES, size - start):
                raise DeltaError(RejectReason.DELTA_BAD_BLOCK, f"{path[:200]} block {index}")
            reader.copy_to(fd, start, length)
            last = index
        os.fchmod(fd, (mode & 0o755) | 0o600)
    finally:
        os.close(fd)


def _prune(tree: StagedTree, dirs: set[str], files: set[str]) -> None:
    """After a FINAL delta: drop every staged entry the origin's state no longer has."""
    for path in sorted(set(tree.sizes) - files):
        if path in tree.sizes:
            _remove(tree, path)
    for path in sorted(tree.dirs - dirs, key=len):
        if path in tree.dirs:
            _remove(tree, path)
