"""The full-disk fault's checks (``lab/chaos.py``, ``lab/small_disk.py``): what the node
said it accepted before its disk filled, and whether its store still has all of it.

"A node with a full disk stops cleanly or recovers, and loses no accepted block"
(issue 12): stopping cleanly is exit status 75 (``node_daemon.py``); an accepted block
is one its ``GET /blocks`` listed; it is kept if its hash is in the node's
``chain.db`` after the node came back (read-only, beside the running node: SQLite in
WAL mode lets a reader in).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Collection
from pathlib import Path

from edgechain.lab.faults_live import http_get

CLEAN_STOP_EXIT = 75
"""``node_daemon.py``: a store write failed because the disk is full (EX_TEMPFAIL)."""
SMALL_DISK_BYTES = 32 * 1024 * 1024


def read_accepted(url: str) -> set[str]:
    """Hashes of the blocks the node lists as accepted (empty if it does not answer)."""
    with contextlib.suppress(OSError, ValueError):
        answer = http_get(url, "/blocks")
        if isinstance(answer, list):
            return {str(entry["hash"]) for entry in answer if isinstance(entry, dict)}
    return set()


def find_lost_blocks(chain_db: Path, accepted: Collection[str]) -> list[str]:
    """The accepted hashes missing from ``chain_db`` (all of them if it cannot be read)."""
    wanted = sorted(accepted)
    if not wanted:
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{chain_db}?mode=ro", uri=True)) as db:
            stored = {
                bytes(row[0]).hex()
                for row in db.execute(
                    f"SELECT hash FROM blocks WHERE hash IN ({','.join('?' * len(wanted))})",
                    [bytes.fromhex(h) for h in wanted],
                )
            }
    except sqlite3.Error:
        return wanted
    return [h for h in wanted if h not in stored]


def keep_logs(data_dir: Path) -> Path:
    """Copy the ``*.log`` files of the small-disk node's data directory to
    ``<data_dir>-logs`` beside it before the directory's own file system is unmounted
    (and its contents gone): what the node and its watchdog logged stays readable."""
    kept = data_dir.with_name(data_dir.name + "-logs")
    kept.mkdir(exist_ok=True)
    for log in data_dir.glob("*.log"):
        with contextlib.suppress(OSError):
            shutil.copy2(log, kept / log.name)
    return kept
