"""The node's side of fencing: it renews its lease and owns its watchdog process.

Why (DESIGN.md, "Exactly once: the app-layer contract"): an app must be fenced before
the chain re-places it, even when its node is paused or partitioned, so the node
cannot be the one that freezes its apps. It only renews a lease while it sees a
current chain (:class:`LeaseWriter`, cheap to call every tick); a separate process,
``runtime/watchdog.py``, started here (:class:`Watchdog`) and left running should the
node stop or die, freezes the apps once the lease has expired. The node shows what
the watchdog froze in its status (:func:`get_frozen_apps`).

The watchdog is started as ``python -I -S -c BOOTSTRAP``: the bootstrap registers
empty ``edgechain`` and ``edgechain.runtime`` packages before importing the watchdog,
because ``runtime/__init__.py`` imports the whole runtime (crypto, transfer, psutil:
~27 MB resident) and a watchdog runs per node, 50 nodes per host; so it stays near
the interpreter's own size.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from edgechain.runtime.lease import (
    WATCHDOG_LOG_FILE,
    WATCHDOG_PID_FILE,
    WATCHDOG_STATE_FILE,
    read_json,
    read_pid_entry,
    write_lease,
    write_pid_entry,
)
from edgechain.runtime.watchdog import CREATE_TIME_TOLERANCE_S, DEFAULT_POLL_MS

MIN_RENEW_INTERVAL_MS = 200
"""A lease that only moves forward is rewritten at most this often."""
STOP_TIMEOUT_S = 5.0

_SOURCE_ROOT = Path(__file__).resolve().parents[2]
"""The directory holding the ``edgechain`` package."""
_BOOTSTRAP = """\
import sys, types
source_root = sys.argv.pop(1)
for name in ("edgechain", "edgechain.runtime"):
    package = types.ModuleType(name)
    package.__path__ = [source_root + "/" + name.replace(".", "/")]
    sys.modules[name] = package
from edgechain.runtime.watchdog import main
sys.exit(main(sys.argv[1:]))
"""

_log = logging.getLogger("edgechain.runtime")


def get_watchdog_command(
    data_dir: Path, poll_ms: int, parent_pid: int | None, clock_offset_ms: int = 0
) -> list[str]:
    """The argv of a lean watchdog (see the module docstring): isolated from the
    environment (``-I``) and from site-packages (``-S``), which it does not need.
    ``clock_offset_ms``: the node's ``--clock-offset-ms``; the watchdog reads its clock
    with it, since the node writes the lease in its shifted clock (``=``: a negative
    value is not taken for an option)."""
    command = [sys.executable, "-I", "-S", "-c", _BOOTSTRAP, str(_SOURCE_ROOT)]
    command += ["--data-dir", str(data_dir), "--poll-ms", str(poll_ms)]
    if parent_pid is not None:
        command += ["--parent-pid", str(parent_pid)]
    if clock_offset_ms:
        command.append(f"--clock-offset-ms={clock_offset_ms}")
    return command


class Watchdog:
    """The node's watchdog process (``runtime/watchdog.py``), one per data dir;
    ``clock_offset_ms``: the node's ``--clock-offset-ms`` (the lease is in that clock)."""

    def __init__(self, *, poll_ms: int = DEFAULT_POLL_MS, clock_offset_ms: int = 0) -> None:
        self.poll_ms = poll_ms
        self.clock_offset_ms = clock_offset_ms
        self._proc: subprocess.Popen[bytes] | None = None
        self._data_dir: Path | None = None
        self._parent_pid: int | None = None
        self.restarts = 0
        """Times :meth:`restart_if_ended` found it ended and started it again."""

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, data_dir: Path | str, parent_pid: int | None = None) -> None:
        """Start watching ``data_dir`` for the node ``parent_pid`` (default: this
        process), after ending the watchdog of an earlier incarnation if one runs."""
        if self.is_alive():
            raise RuntimeError("the watchdog is already running")
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        end_previous_watchdog(data_dir)
        parent = os.getpid() if parent_pid is None else parent_pid
        command = get_watchdog_command(data_dir, self.poll_ms, parent, self.clock_offset_ms)
        fd = os.open(data_dir / WATCHDOG_LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with open(fd, "ab") as log:
            # Its own session: no terminal's signal reaches it, and it outlives the node
            # (no parent-death signal, unlike the apps).
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd="/",
            )
        self._data_dir = data_dir
        self._parent_pid = parent_pid
        # The watchdog records itself too, but only once it runs: a node restarted at
        # once must find this one.
        record_process(data_dir / WATCHDOG_PID_FILE, self._proc.pid)

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def restart_if_ended(self) -> int | None:
        """Start the watchdog again if it has ended since :meth:`start` (killed, say,
        by a stray ``pkill`` or the OOM killer): the exit status of the one that ended
        (negative: the signal), else None. Why: without it nothing fences our apps, and
        a pause or a partition of this node then leaves them running beside the copies
        the chain recovers elsewhere (seen live, session 44). ``OSError`` when it cannot
        be started; the caller tries again."""
        proc = self._proc
        if proc is None or self._data_dir is None:
            return None  # never started, or stopped on purpose
        code = proc.poll()
        if code is None:
            return None
        self._proc = None
        try:
            self.start(self._data_dir, self._parent_pid)
        except BaseException:
            self._proc = proc  # still ended: the next call tries again
            raise
        self.restarts += 1
        return code

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the watchdog (it exits without freezing or thawing); SIGKILL it
        if it has not exited after ``timeout_s``."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._data_dir is not None:
            pid_file = self._data_dir / WATCHDOG_PID_FILE
            recorded = read_pid_entry(pid_file)
            if recorded is not None and recorded[0] == proc.pid:
                pid_file.unlink(missing_ok=True)
        self._proc = None  # stopped on purpose: not one to restart


def record_process(path: Path, pid: int) -> None:
    with contextlib.suppress(psutil.Error):
        write_pid_entry(path, pid, psutil.Process(pid).create_time())


ARGV_WAIT_S = 1.0
"""How long :func:`is_watching` waits for a process's argv to read non-empty."""


def is_watching(proc: psutil.Process, data_dir: Path) -> bool:
    """Whether the watchdog ``proc`` watches ``data_dir`` by its argv. A data directory
    copied on the same host names the original's watchdog in its pid file, pid and
    start time alike: the copy must not end it. True when the argv cannot be read (the
    pid file and the start time decide, as they did alone before).

    A process started a moment ago can read with an empty argv (``/proc/<pid>/cmdline``
    while its exec completes: seen in one run in three of a copy started at once beside
    the original on a loaded host, which then ended the original's watchdog), so an
    empty one is read again for up to ``ARGV_WAIT_S``."""
    deadline = time.monotonic() + ARGV_WAIT_S
    try:
        argv = proc.cmdline()
        while not argv and time.monotonic() < deadline:
            time.sleep(0.01)
            argv = proc.cmdline()
    except psutil.Error:
        return True
    if "--data-dir" not in argv[:-1]:
        return True
    named = argv[argv.index("--data-dir") + 1]
    return os.path.realpath(named) == os.path.realpath(data_dir)


def end_previous_watchdog(data_dir: Path, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
    """End the watchdog ``<data_dir>/watchdog.pid`` names if it still runs (same pid
    and creation time, watching ``data_dir``); return its pid, or None when there was
    none."""
    recorded = read_pid_entry(data_dir / WATCHDOG_PID_FILE)
    if recorded is None or recorded[0] == os.getpid():
        return None
    pid, created = recorded
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - created) >= CREATE_TIME_TOLERANCE_S:
            return None  # the pid belongs to another process now
        if not is_watching(proc, data_dir):
            return None  # another data directory's, whose pid file was copied here
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except psutil.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
    except psutil.NoSuchProcess:
        return None
    _log.info("ended the watchdog of an earlier incarnation (pid %d)", pid)
    return pid


class LeaseWriter:
    """Renews ``<data_dir>/lease.json``; cheap to call on every tick.

    A new set of apps, or a lease that got shorter, is written at once; a lease that
    only moves forward at most every ``min_interval_ms`` (the lease lasts slots, so a
    renewal a few hundred milliseconds late costs nothing). A failed write is logged
    and retried by the next call: the lease then simply runs out, which is safe.
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        node_pid: int | None = None,
        min_interval_ms: int = MIN_RENEW_INTERVAL_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.node_pid = os.getpid() if node_pid is None else node_pid
        self.min_interval_ms = min_interval_ms
        self._clock = clock
        self._written: tuple[int, frozenset[str]] | None = None
        self._written_at = 0.0

    def renew(
        self, valid_until_ms: int, apps: Iterable[bytes], retire_after_ms: int | None = None
    ) -> None:
        """Let the apps ``apps`` run here until ``valid_until_ms`` (wall-clock epoch
        milliseconds); from ``retire_after_ms`` on, the watchdog kills what it froze."""
        listed = frozenset(bytes(app).hex() for app in apps)
        if not self._is_due(valid_until_ms, listed):
            return
        try:
            write_lease(self.data_dir, valid_until_ms, listed, self.node_pid, retire_after_ms)
        except OSError as exc:
            _log.warning("cannot renew the fencing lease: %s", exc)
            return
        self._written = (valid_until_ms, listed)
        self._written_at = self._clock()

    def _is_due(self, valid_until_ms: int, listed: frozenset[str]) -> bool:
        if self._written is None:
            return True
        written_until, written_apps = self._written
        if listed != written_apps or valid_until_ms < written_until:
            return True
        if valid_until_ms == written_until:
            return False
        return (self._clock() - self._written_at) * 1000 >= self.min_interval_ms


def get_frozen_apps(data_dir: Path | str) -> set[str]:
    """Hex ids of the apps the watchdog holds frozen (``<data_dir>/watchdog.json``)."""
    state = read_json(Path(data_dir) / WATCHDOG_STATE_FILE) or {}
    frozen = state.get("frozen")
    if not isinstance(frozen, list):
        return set()
    return {app for app in frozen if isinstance(app, str)}
