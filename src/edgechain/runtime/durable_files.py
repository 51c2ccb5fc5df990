"""Files replaced whole: a reader, or a node that crashed mid-write, sees the old
content or the new, never a part.

A temporary file beside the target (its name carries the writer's pid, as the node and
its watchdog write beside each other), renamed over it; on any failure (a full disk)
the temporary file is removed and the error raised, the target left as it was.

* ``write_atomically``: for what other processes poll (the lease and the watchdog's
  files, the ready and API files, ``left.json``, an app's spec and version). Cheap: no
  fsync, as the lease is rewritten every second.
* ``write_durably``: for what a node must not forget across a power cut (a replica's
  metadata, ``runtime/replica.py``; its last finality vote, ``node/vote_file.py``): the
  file and then its directory are fsynced, so the rename itself survives.

Stdlib only, no ``pathlib`` or ``typing``: the watchdog imports it through
``lease.py``, lean on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os

TYPE_CHECKING = False  # typing itself would cost every watchdog half a megabyte
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    StrPath: TypeAlias = str | os.PathLike[str]


def write_atomically(path: StrPath, data: bytes) -> None:
    """Replace ``path`` (mode 0644) with ``data``."""
    _replace(os.fspath(path), data, sync=False)


def write_json_atomically(path: StrPath, value: Any) -> None:
    """Replace ``path`` with ``value`` as compact JSON and a newline."""
    write_atomically(path, (json.dumps(value, separators=(",", ":")) + "\n").encode())


def write_durably(path: StrPath, data: bytes) -> None:
    """Replace ``path`` with ``data`` and fsync it and its directory before returning."""
    _replace(os.fspath(path), data, sync=True)


def _replace(path: str, data: bytes, *, sync: bool) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with open(fd, "wb") as file:
            file.write(data)
            if sync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(tmp, path)
        if sync:
            _fsync_directory(os.path.dirname(path) or ".")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
