"""Files a crash must not take back: written whole or not at all, and on disk once the
call returns.

A temporary file beside the target, fsynced, renamed over it, and the directory fsynced
so that the rename itself survives a power cut. For what a node must not forget: a
replica's metadata (``runtime/replica.py``), its last finality vote
(``node/vote_file.py``).
"""

from __future__ import annotations

import os
from pathlib import Path


def write_durably(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` as the module says; on an OSError (a full disk)
    the temporary file is removed and the error raised, ``path`` left as it was."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
