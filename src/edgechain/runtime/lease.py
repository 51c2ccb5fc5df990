"""The node's fencing lease and the files it shares with its watchdog.

Why (DESIGN.md, "Exactly once: the app-layer contract"): a node renews a lease while it
sees a current chain, and a watchdog outside the node's process freezes the node's
apps once that lease has expired, so a node that is paused (SIGSTOP), wedged or
partitioned stops its apps before the chain re-places them elsewhere: never two
copies. This module is that contract on disk, in ``<data_dir>``:

* ``lease.json``: ``{"valid_until_ms": <wall-clock epoch ms>, "apps": [<hex app ids
  the node may run>], "node_pid": <int>}``, written by the node
  (:func:`write_lease`), read by the watchdog every poll (:func:`read_lease`); a
  missing or unreadable lease is an expired one. Its times are in the node's clock,
  ``--clock-offset-ms`` included, and the watchdog reads the clock with the same
  offset (``--clock-offset-ms`` of ``watchdog.py``);
* ``watchdog.json``: what the watchdog froze (``{"frozen": [hex ids], "since_ms":
  ..., "pid": ...}`` plus each group's identity), read by the node for its status;
* ``apps/<app id hex>/pid``: the process runtime's pid file, "<leader pid>
  <creation time>" (``runtime/spawner.py`` writes it), and ``apps/<hex>/paused``, the
  runtime's mark that it paused the app itself (for a migration): the watchdog never
  thaws such a group.

Stdlib only and tiny, on purpose: the watchdog imports it, and one watchdog runs per
node (50 nodes per host), so it must not pull in the package's heavy modules.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from edgechain.runtime.durable_files import write_atomically, write_json_atomically

TYPE_CHECKING = False  # typing itself would cost every watchdog half a megabyte
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, TypeAlias

    StrPath: TypeAlias = str | os.PathLike[str]

LEASE_FILE = "lease.json"
WATCHDOG_STATE_FILE = "watchdog.json"
"""What the watchdog froze (written by the watchdog only)."""
WATCHDOG_PID_FILE = "watchdog.pid"
"""The running watchdog's pid and creation time, so a new node incarnation can end it."""
WATCHDOG_LOG_FILE = "watchdog.log"
APPS_DIR = "apps"
"""The process runtime's root under the data dir (``runtime/manager.py``)."""
PID_FILE = "pid"
"""In an app's directory: "<leader pid> <creation time>" (``spawner.PID_FILE``)."""
RUNTIME_PAUSED_FILE = "paused"
"""In an app's directory while the runtime itself keeps the app paused."""


@dataclass(frozen=True)
class Lease:
    """One reading of ``lease.json``."""

    valid_until_ms: int
    """Wall-clock epoch milliseconds; the lease is expired once the clock is past it."""
    apps: frozenset[str]
    """Hex ids of the apps the node may run (the watchdog thaws only these)."""
    node_pid: int
    retire_after_ms: int | None = None
    """From this wall-clock instant on, the chain may have recovered the node's apps
    elsewhere: the watchdog kills (SIGKILL, state kept) the groups it holds frozen, so a
    node back from a pause finds no stale copy left. None: never."""


def get_now_ms(offset_ms: int = 0) -> int:
    """Wall-clock epoch milliseconds (what ``valid_until_ms`` is compared with), shifted
    by ``offset_ms``: the node's ``--clock-offset-ms``, with which it writes the lease
    and its watchdog reads the clock (``node_clock.NodeClock``)."""
    return time.time_ns() // 1_000_000 + offset_ms


def is_expired(lease: Lease | None, now_ms: int) -> bool:
    """No lease, or one whose ``valid_until_ms`` has passed."""
    return lease is None or now_ms > lease.valid_until_ms


def get_lease_path(data_dir: StrPath) -> str:
    return os.path.join(data_dir, LEASE_FILE)


def write_lease(
    data_dir: StrPath,
    valid_until_ms: int,
    apps: Iterable[str],
    node_pid: int,
    retire_after_ms: int | None = None,
) -> None:
    """Atomically replace ``<data_dir>/lease.json`` (``apps``: hex app ids)."""
    content: dict[str, Any] = {
        "valid_until_ms": valid_until_ms,
        "apps": sorted(apps),
        "node_pid": node_pid,
    }
    if retire_after_ms is not None:
        content["retire_after_ms"] = retire_after_ms
    write_json_atomically(get_lease_path(data_dir), content)


def read_lease(path: StrPath) -> Lease | None:
    """The lease in ``path``; None (expired) when it is missing or malformed."""
    content = read_json(path)
    if content is None:
        return None
    valid_until = content.get("valid_until_ms")
    apps = content.get("apps")
    node_pid = content.get("node_pid")
    if not (isinstance(valid_until, int) and isinstance(node_pid, int)):
        return None
    if isinstance(valid_until, bool) or isinstance(node_pid, bool):
        return None  # JSON true/false are ints to Python
    if not isinstance(apps, list) or not all(isinstance(app, str) for app in apps):
        return None
    retire = content.get("retire_after_ms")
    if not isinstance(retire, int) or isinstance(retire, bool):
        retire = None
    return Lease(valid_until, frozenset(apps), node_pid, retire)


def read_pid_entry(path: StrPath) -> tuple[int, float] | None:
    """A pid file's "<pid> <creation time>" (``spawner.read_pid_file``'s format)."""
    try:
        with open(path, encoding="ascii") as file:
            pid_text, created_text = file.read().split()
        return int(pid_text), float(created_text)
    except (OSError, ValueError):
        return None


def write_pid_entry(path: StrPath, pid: int, created: float) -> None:
    write_atomically(path, f"{pid} {created}\n".encode())


def read_json(path: StrPath) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as file:
            content = json.load(file)
    except (OSError, ValueError):
        return None
    return content if isinstance(content, dict) else None
