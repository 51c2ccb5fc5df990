"""The process runtime: the embedded default (DESIGN.md, "Runtimes").

Runs any command (``AppSpec.command``) as a plain process with no daemon. Each app has
its own directory ``<root>/<app id hex>/`` holding ``state/`` (given to the app through
``EDGECHAIN_STATE_DIR``; the only thing a migration carries), ``app.log`` and the
runtime's own bookkeeping. Each app runs in its own session, so its whole process group
is signalled and killed together: stopping an app never leaves its children behind.

Migration (paper §3.3, §4.2). The paper's CRIU path freezes a container and ships only
its state; the standard path stops it and ships everything. Here ``save`` either

* uses the app's *cooperative checkpoint hook* when the app advertises one (a
  ``.checkpoint-hook`` file in its state dir): SIGUSR1 to the group, wait for the app
  to touch ``EDGECHAIN_CHECKPOINT_ACK``, then SIGSTOP the group. The app stays frozen
  in memory, like a CRIU dump with ``--leave-running`` off, and a failed migration
  resumes it with SIGCONT at once; or
* stops the app gracefully: SIGTERM to the group, ``stop_grace_s`` to exit, then
  SIGKILL. A failed migration restarts it from the untouched state dir.

Either way only the state dir is archived (tar), so the payload is the app's state,
like CRIU's small checkpoint, never an image.

Apps die with their node: with ``die_with_node`` each app is started through
``setpriv --pdeathsig KILL`` from one long-lived spawner thread, so if the node process
dies (killed mid-restore, say) its apps get SIGKILL instead of running on unseen next
to the copy the origin resumes. A pid file per app lets a restarted runtime reap
orphans of an earlier incarnation (``reap_orphans``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgechain.chain.model import BASIS_POINTS, AppSpec, RuntimeKind
from edgechain.runtime.archive import extract_state_archive, get_tree_size, write_state_archive
from edgechain.runtime.base import (
    CHECKPOINT_ACK_ENV,
    CHECKPOINT_MARKER,
    STATE_DIR_ENV,
    AppDirectories,
    AppInfo,
    AppNotFoundError,
    AppRuntimeError,
    AppStats,
    AppStatus,
    SavedState,
)
from edgechain.types import AppId

PID_FILE = "pid"
SAVED_ARCHIVE = "saved.tar"
ACK_FILE = "checkpoint.ack"
LOG_FILE = "app.log"
_POLL_S = 0.002


@dataclass
class _App:
    """Mutable bookkeeping of one app (private: never leaves the runtime)."""

    spec: AppSpec
    proc: subprocess.Popen[bytes] | None
    status: AppStatus
    lock: threading.RLock
    last_sample: tuple[float, float] | None = None
    """(monotonic time, CPU seconds) at the previous ``stats`` call."""


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _read_pid_file(path: Path) -> tuple[int, float] | None:
    try:
        pid_text, created_text = path.read_text().split()
        return int(pid_text), float(created_text)
    except (OSError, ValueError):
        return None


class ProcessRuntime(AppDirectories):
    """``AppRuntime`` for plain processes, each app in its own session and state dir."""

    def __init__(
        self,
        root: Path,
        *,
        stop_grace_s: float = 2.0,
        checkpoint_timeout_s: float = 1.0,
        die_with_node: bool = True,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stop_grace_s = stop_grace_s
        self.checkpoint_timeout_s = checkpoint_timeout_s
        self._setpriv = shutil.which("setpriv") if die_with_node else None
        self._apps: dict[AppId, _App] = {}
        self._lock = threading.Lock()
        # One long-lived thread forks every app: the parent-death signal fires when the
        # *thread* that forked a child exits, so forking from short-lived executor
        # threads would kill apps at random.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgechain-spawn")
        self._closed = False
        self.reap_orphans()

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.PROCESS

    # --- paths ---------------------------------------------------------------------------

    # --- bookkeeping ---------------------------------------------------------------------

    def _get(self, app: AppId) -> _App:
        with self._lock:
            record = self._apps.get(app)
        if record is None:
            raise AppNotFoundError(f"no app {bytes(app).hex()[:16]} on this runtime")
        return record

    def _refresh(self, record: _App) -> AppStatus:
        """Notice an app that exited on its own (and reap it)."""
        if record.proc is not None and record.proc.poll() is not None:
            self._kill_leftovers(record.proc.pid)
            record.proc = None
            record.status = AppStatus.STOPPED
        return record.status

    def reap_orphans(self) -> int:
        """Kill app process groups left by an earlier incarnation of this runtime.

        Their state directories stay (state is never thrown away); only processes go.
        Returns how many groups were killed.
        """
        killed = 0
        for pid_file in self.root.glob(f"*/{PID_FILE}"):
            entry = _read_pid_file(pid_file)
            if entry is None:
                continue
            pid, created = entry
            with self._lock:
                owned = any(r.proc is not None and r.proc.pid == pid for r in self._apps.values())
            if owned:
                continue
            try:
                alive = abs(psutil.Process(pid).create_time() - created) < 0.01
            except psutil.Error:
                alive = False
            if alive and _signal_group(pid, signal.SIGKILL):
                killed += 1
            pid_file.unlink(missing_ok=True)
        return killed

    # --- process control -----------------------------------------------------------------

    def _spawn(self, app: AppId, spec: AppSpec) -> subprocess.Popen[bytes]:
        if not spec.command:
            raise AppRuntimeError(f"app {spec.name!r} has no command for the process runtime")
        app_dir = self.get_app_dir(app)
        state_dir = self.get_state_dir(app)
        state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env[STATE_DIR_ENV] = str(state_dir)
        env[CHECKPOINT_ACK_ENV] = str(app_dir / ACK_FILE)
        argv = list(spec.command)
        if self._setpriv is not None:
            argv = [self._setpriv, "--pdeathsig", "KILL", "--", *argv]

        def fork() -> subprocess.Popen[bytes]:
            with (app_dir / LOG_FILE).open("ab") as log:
                return subprocess.Popen(
                    argv,
                    cwd=state_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        try:
            proc = self._spawner.submit(fork).result()
        except OSError as exc:
            raise AppRuntimeError(f"cannot start {spec.name!r}: {exc}") from exc
        try:
            created = psutil.Process(proc.pid).create_time()
        except psutil.Error:
            created = 0.0
        (app_dir / PID_FILE).write_text(f"{proc.pid} {created}\n")
        return proc

    def _kill_leftovers(self, pgid: int) -> None:
        # The leader is gone; children it left in its group (a pending `sleep`) go too.
        _signal_group(pgid, signal.SIGKILL)

    def _terminate(self, record: _App, app: AppId, grace_s: float) -> None:
        """SIGTERM the group, wait ``grace_s``, then SIGKILL; reap everything."""
        proc = record.proc
        if proc is not None:
            pgid = proc.pid
            if record.status is AppStatus.PAUSED and grace_s > 0:
                # A stopped process cannot handle SIGTERM; without a grace (removing the
                # origin's copy after a migration) SIGKILL alone ends it, never letting
                # the frozen copy run again.
                _signal_group(pgid, signal.SIGCONT)
            if grace_s > 0 and _signal_group(pgid, signal.SIGTERM):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=grace_s)
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()
            self._kill_leftovers(pgid)
        record.proc = None
        record.status = AppStatus.STOPPED
        record.last_sample = None
        (self.get_app_dir(app) / PID_FILE).unlink(missing_ok=True)

    def _checkpoint_and_freeze(self, record: _App, app: AppId) -> bool:
        """Cooperative checkpoint: SIGUSR1, wait for the app's ack, then SIGSTOP."""
        proc = record.proc
        if proc is None:
            return False
        ack = self.get_app_dir(app) / ACK_FILE
        ack.unlink(missing_ok=True)
        # The whole group gets SIGUSR1: it also ends a pending `sleep` in a shell app, so
        # the trap runs at once instead of after the sleep.
        if not _signal_group(proc.pid, signal.SIGUSR1):
            return False
        deadline = time.monotonic() + self.checkpoint_timeout_s
        while not ack.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                return False
            time.sleep(_POLL_S)
        _signal_group(proc.pid, signal.SIGSTOP)
        record.status = AppStatus.PAUSED
        return True

    # --- the AppRuntime interface --------------------------------------------------------

    def start(self, app: AppId, spec: AppSpec) -> None:
        with self._lock:
            if self._closed:
                raise AppRuntimeError("runtime is closed")
            record = self._apps.get(app)
            if record is None:
                record = _App(spec, None, AppStatus.STOPPED, threading.RLock())
                self._apps[app] = record
        with record.lock:
            if self._refresh(record) is not AppStatus.STOPPED:
                raise AppRuntimeError(f"app {spec.name!r} is already running")
            record.spec = spec
            record.proc = self._spawn(app, spec)
            record.status = AppStatus.RUNNING
            record.last_sample = None

    def stop(self, app: AppId) -> None:
        record = self._get(app)
        with record.lock:
            self._refresh(record)
            self._terminate(record, app, self.stop_grace_s)

    def pause(self, app: AppId) -> None:
        record = self._get(app)
        with record.lock:
            if self._refresh(record) is AppStatus.STOPPED or record.proc is None:
                raise AppRuntimeError("cannot pause a stopped app")
            _signal_group(record.proc.pid, signal.SIGSTOP)
            record.status = AppStatus.PAUSED

    def resume(self, app: AppId) -> None:
        record = self._get(app)
        with record.lock:
            (self.get_app_dir(app) / SAVED_ARCHIVE).unlink(missing_ok=True)
            status = self._refresh(record)
            if status is AppStatus.PAUSED and record.proc is not None:
                _signal_group(record.proc.pid, signal.SIGCONT)
                record.status = AppStatus.RUNNING
            elif status is AppStatus.STOPPED:
                record.proc = self._spawn(app, record.spec)
                record.status = AppStatus.RUNNING
                record.last_sample = None

    def stats(self, app: AppId) -> AppStats:
        record = self._get(app)
        with record.lock:
            status = self._refresh(record)
            cpu_s, rss = 0.0, 0
            if record.proc is not None:
                cpu_s, rss = _get_group_usage(record.proc.pid)
            now = time.monotonic()
            cpu_bp = 0
            if record.last_sample is not None and record.proc is not None:
                then, cpu_then = record.last_sample
                cpu_bp = compute_cpu_bp(cpu_s - cpu_then, now - then)
            record.last_sample = (now, cpu_s) if record.proc is not None else None
            ram_bp = rss * BASIS_POINTS // max(1, psutil.virtual_memory().total)
            disk = get_tree_size(self.get_state_dir(app))
            return AppStats(app, cpu_bp, min(BASIS_POINTS, ram_bp), rss, disk, status)

    def save(self, app: AppId, *, include_image: bool = False) -> SavedState:
        del include_image  # a process app has no image: its command is on every node
        record = self._get(app)
        with record.lock:
            status = self._refresh(record)
            live = False
            marker = self.get_state_dir(app) / CHECKPOINT_MARKER
            if status is AppStatus.RUNNING and marker.exists():
                live = self._checkpoint_and_freeze(record, app)
            elif status is AppStatus.PAUSED:
                live = True  # already frozen by pause(): archive as it stands
            if not live:
                self._terminate(record, app, self.stop_grace_s)
            archive = self.get_app_dir(app) / SAVED_ARCHIVE
            try:
                size = write_state_archive(self.get_state_dir(app), archive)
            except BaseException:
                self.resume(app)
                raise
            return SavedState(app, archive, size, live, includes_image=False)

    def restore(self, app: AppId, spec: AppSpec, archive: Path) -> None:
        with self._lock:
            if self._closed:
                raise AppRuntimeError("runtime is closed")
            record = self._apps.get(app)
            if record is None:
                record = _App(spec, None, AppStatus.STOPPED, threading.RLock())
                self._apps[app] = record
        with record.lock:
            if self._refresh(record) is not AppStatus.STOPPED:
                raise AppRuntimeError(f"app {spec.name!r} is already running here")
            try:
                extract_state_archive(archive, self.get_state_dir(app))
                record.spec = spec
                record.proc = self._spawn(app, spec)
                record.status = AppStatus.RUNNING
                record.last_sample = None
            except BaseException:
                # Nothing of a failed restore stays: the origin still owns the app.
                self._forget(app, record)
                raise

    def remove(self, app: AppId) -> None:
        with self._lock:
            record = self._apps.get(app)
        if record is None:
            shutil.rmtree(self.get_app_dir(app), ignore_errors=True)
            return
        with record.lock:
            self._forget(app, record)

    def _forget(self, app: AppId, record: _App) -> None:
        self._refresh(record)
        # The state now lives elsewhere: no grace needed, the group just goes.
        self._terminate(record, app, grace_s=0)
        shutil.rmtree(self.get_app_dir(app), ignore_errors=True)
        with self._lock:
            if self._apps.get(app) is record:
                del self._apps[app]

    def list(self) -> tuple[AppInfo, ...]:
        with self._lock:
            items = list(self._apps.items())
        out = []
        for app, record in items:
            with record.lock:
                out.append(AppInfo(app, record.spec.name, self._refresh(record)))
        return tuple(out)

    def is_running(self, app: AppId) -> bool:
        with self._lock:
            record = self._apps.get(app)
        if record is None:
            return False
        with record.lock:
            return self._refresh(record) is not AppStatus.STOPPED

    def has_image(self, spec: AppSpec) -> bool:
        del spec
        return True

    def get_pid(self, app: AppId) -> int | None:
        """The pid of the app's group leader, or None when it is not running."""
        record = self._get(app)
        with record.lock:
            self._refresh(record)
            return record.proc.pid if record.proc is not None else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            items = list(self._apps.items())
        for app, record in items:
            with record.lock:
                self._refresh(record)
                self._terminate(record, app, min(self.stop_grace_s, 1.0))
        self._spawner.shutdown(wait=True)

    def __enter__(self) -> ProcessRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def compute_cpu_bp(cpu_seconds: float, wall_seconds: float) -> int:
    """CPU share of the whole host in basis points, clamped to [0, BASIS_POINTS]."""
    cores = psutil.cpu_count() or 1
    if wall_seconds <= 0:
        return 0
    share = cpu_seconds / (wall_seconds * cores)
    return max(0, min(BASIS_POINTS, round(share * BASIS_POINTS)))


def _get_group_usage(leader_pid: int) -> tuple[float, int]:
    """CPU seconds (including reaped children) and RSS bytes of a process tree."""
    cpu, rss = 0.0, 0
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(leader_pid)
        with leader.oneshot():
            times = leader.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += leader.memory_info().rss
        for child in leader.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                cpu += times.user + times.system
                rss += child.memory_info().rss
    return cpu, rss
