"""A process app's log kept to a bounded size (``app.log``, ``runtime/process_launch.py``).

A process app's output goes straight to ``app.log`` through an inherited ``O_APPEND``
descriptor, so the node never sits in its path (a paused or restarting node does not
block a chatty app). Nothing bounded it: an app that printed without end filled its
node's disk, and with it the node's own store. :func:`trim_log` is called on every
usage sample (``ProcessRuntime.stats``): past :data:`MAX_LOG_BYTES` the log keeps its
last :data:`KEEP_LOG_BYTES` from a line start, behind one line that says how much went.
It is logrotate's *copytruncate* done in place: the app's next write lands at the new
end (``O_APPEND``); what it writes while the tail is being copied may be lost, which a
log may afford and a state may not (state lives in the state directory, never here).
:func:`read_log_tail` reads its end for ``GET /apps/{app}/log`` (``edgechain apps
logs``), bounded in lines and bytes.

A log outlives its copy here. When the node deletes an app's directory because the app
runs elsewhere now (a move, a recovery), :func:`keep_log` moves its log's last
:data:`KEEP_LOG_BYTES` to ``<data>/app-logs/<app hex>.log`` (at most
:data:`MAX_KEPT_LOGS` of them, the oldest go first), where ``edgechain apps logs`` still
finds it, beside the new node's: a user trial of session 44 found a moved app's earlier
output gone from its old node once the copy there was deleted. The app's next start
here appends to it again (:func:`take_kept_log`); an app removed from the chain takes
its kept log with it.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.read_auth import MAX_TAIL_LINES
from edgechain.types import AppId

MAX_LOG_BYTES = 8 * 1024 * 1024
"""An app's log is trimmed once it is larger than this."""
KEEP_LOG_BYTES = 1024 * 1024
"""How much of its end a trimmed log keeps (so the last line a crash report reads,
``process_launch.read_last_output``, survives)."""


def trim_log(path: Path, max_bytes: int = MAX_LOG_BYTES, keep_bytes: int = KEEP_LOG_BYTES) -> int:
    """Trim ``path`` to about its last ``keep_bytes`` once it is larger than
    ``max_bytes``; the bytes dropped (0: nothing to do, or no log)."""
    try:
        if os.stat(path).st_size <= max_bytes:
            return 0  # the usual case, on every sample: no descriptor opened
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return 0
    with open(fd, "r+b") as log:
        size = os.fstat(fd).st_size
        if size <= max_bytes:
            return 0
        log.seek(size - keep_bytes)
        tail = log.read(keep_bytes)
        start = tail.find(b"\n") + 1  # from a line start; 0 if the tail has no newline
        kept = tail[start:] if start < len(tail) else tail
        dropped = size - len(kept)
        head = f"[edgechain: {dropped} earlier bytes of this log dropped]\n".encode()
        log.seek(0)
        log.write(head + kept)
        log.truncate(len(head) + len(kept))
        return dropped


MAX_TAIL_BYTES = 1024 * 1024
"""The most bytes of a log's end one read looks at: a line longer than the rest of
this is cut (the API's answer stays bounded whatever the app printed)."""


@dataclass(frozen=True)
class LogTail:
    """The end of an app's output on one node."""

    lines: tuple[str, ...]
    truncated: bool
    """Earlier output exists that these lines do not show."""


def get_log_lines(data: bytes, lines: int, *, cut: bool) -> LogTail:
    """The last ``lines`` lines of ``data`` (``cut``: ``data`` starts mid-log, so its
    first, partial, line is dropped); bytes that are not UTF-8 are replaced."""
    if not 1 <= lines <= MAX_TAIL_LINES:
        raise ValueError(f"lines {lines} outside [1, {MAX_TAIL_LINES}]")
    text = data.decode("utf-8", errors="replace")
    found = text.split("\n")
    if found and found[-1] == "":
        found.pop()  # the newline that ends the last line
    if cut and len(found) > 1:
        found = found[1:]
    return LogTail(tuple(found[-lines:]), truncated=cut or len(found) > lines)


def read_log_end(path: Path, max_bytes: int) -> tuple[bytes, bool] | None:
    """The last ``max_bytes`` of the log at ``path``, and whether earlier bytes were
    left out; None when there is no log."""
    try:
        with open(path, "rb") as log:
            size = os.fstat(log.fileno()).st_size
            log.seek(max(0, size - max_bytes))
            return log.read(max_bytes), size > max_bytes
    except OSError:
        return None


def read_log_tail(path: Path, lines: int) -> LogTail | None:
    """The last ``lines`` lines of the log at ``path`` (at most its last
    :data:`MAX_TAIL_BYTES`); None when there is no log."""
    end = read_log_end(path, MAX_TAIL_BYTES)
    if end is None:
        return None
    data, cut = end
    return get_log_lines(data, lines, cut=cut)


MAX_KEPT_LOGS = 32
"""Logs of apps that left this node that :func:`keep_log` keeps (1 MiB each at most)."""


def keep_log(log_path: Path, kept: Path, max_kept: int = MAX_KEPT_LOGS) -> None:
    """Move ``log_path`` (an app's, its copy about to be deleted) to ``kept``, trimmed
    to its last :data:`KEEP_LOG_BYTES`; then delete the oldest kept logs beyond
    ``max_kept``. Nothing when there is no log."""
    if not log_path.exists():
        return
    kept.parent.mkdir(parents=True, exist_ok=True)
    trim_log(log_path, KEEP_LOG_BYTES, KEEP_LOG_BYTES)
    os.replace(log_path, kept)
    _prune_kept(kept, max_kept)


def keep_output(output: bytes, kept: Path, max_kept: int = MAX_KEPT_LOGS) -> None:
    """Keep ``output`` (a container's log, read from its engine before the container is
    deleted) at ``kept``: its last :data:`KEEP_LOG_BYTES`, from a line start, after
    what an earlier departure kept there; then prune as :func:`keep_log` does."""
    if not output:
        return
    kept.parent.mkdir(parents=True, exist_ok=True)
    with open(kept, "ab") as file:
        file.write(output)  # at most the engine's capped log
    trim_log(kept, KEEP_LOG_BYTES, KEEP_LOG_BYTES)
    _prune_kept(kept, max_kept)


def _prune_kept(kept: Path, max_kept: int) -> None:
    os.utime(kept)  # the time it left: the oldest departures go first
    logs = []
    for path in kept.parent.glob("*.log"):
        with contextlib.suppress(OSError):
            logs.append((path.stat().st_mtime_ns, path))
    for _, path in sorted(logs)[: max(0, len(logs) - max_kept)]:
        path.unlink(missing_ok=True)


def take_kept_log(kept: Path, log_path: Path) -> None:
    """Put a kept log back as the app's log before the app starts here again, so its
    output goes on where it left off; nothing when there is none or the app has a log."""
    if kept.exists() and not log_path.exists():
        os.replace(kept, log_path)


def list_kept_logs(kept_dir: Path) -> frozenset[AppId]:
    """The apps whose log ``kept_dir`` holds (files ``<app hex>.log``)."""
    apps = set()
    with contextlib.suppress(OSError):
        for path in kept_dir.glob("*.log"):
            with contextlib.suppress(ValueError):
                app = bytes.fromhex(path.stem)
                if len(app) == 32:
                    apps.add(AppId(app))
    return frozenset(apps)
