"""The process runtime: the embedded default (DESIGN.md, "Runtimes").

Runs any command (``AppSpec.command``) as a plain process with no daemon. Each app has
its own directory ``<root>/<app id hex>/`` holding ``state/`` (given to the app through
``EDGECHAIN_STATE_DIR``; the only thing a migration carries), ``app.log`` and the
runtime's own bookkeeping. Each app runs in its own session, so its whole process group
is signalled and killed together: stopping an app never leaves its children behind.

:class:`ProcessRuntime` is the ``AppRuntime`` implementation: it keeps each app's
record (spec, process, status) under its locks and composes the pieces that do the
work, each in its own module:

* ``runtime/spawner.py``: starting apps (one spawner thread, ``setpriv --pdeathsig
  KILL`` so apps die with their node), pid files, reaping orphans of an earlier
  incarnation (``reap_orphans``);
* ``runtime/process_group.py``: signalling, ending and measuring an app's process
  group;
* ``runtime/checkpoint.py``: what ``save`` does for a migration (the cooperative
  checkpoint hook, else a graceful stop; the state archive);
* ``runtime/appuser.py``: the unprivileged user apps run as.

Never as root: when the node runs as root, every app runs as ``app_user`` (``nobody``
by default; ``runtime/appuser.py``) with no supplementary groups. The app owns its
``state/`` and a ``run/`` directory for its checkpoint acknowledgement; the app
directory itself and the runtime's files in it (pid file, recorded spec, log) stay
root's. A node that is not root runs apps as its own user: there is nothing to drop.

Each app directory records the spec (and, when the caller gave one, the spec version)
the app was last started with, so the runtime knows after a node restart which apps it
holds and which version each one ran (``get_release``); the node compares that with
the chain's registry to carry out UPDATE and REMOVE.

Fencing (DESIGN.md, "Exactly once"; ``runtime/watchdog.py``): the node's watchdog
freezes (SIGSTOP) every app group once the node's lease has expired. Such an app is
listed as ``AppStatus.FROZEN`` (its leader is stopped, yet the runtime did not pause
it), the runtime never continues it, and stopping it is a SIGKILL at once: a stale
copy must never run again, not even its SIGTERM handler. While the runtime pauses an
app itself (``pause``, a live ``save``), a ``paused`` file in its directory tells the
watchdog never to thaw that group.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from edgechain.chain.model import BASIS_POINTS, AppSpec, RuntimeKind
from edgechain.runtime.appuser import (
    DEFAULT_APP_USER,
    AppUser,
    AppUserError,
    find_unreachable,
    give_tree,
    resolve_app_user,
)
from edgechain.runtime.archive import extract_state_archive, get_tree_size, install_state_dir
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
from edgechain.runtime.checkpoint import (
    ACK_FILE,
    SAVED_ARCHIVE,
    SNAPSHOT_PREFIX,
    StateSnapshot,
    archive_while_frozen,
    checkpoint_and_freeze,
    write_archive_locked_out,
)
from edgechain.runtime.net_traffic import TrafficMeter
from edgechain.runtime.process_group import (
    GroupCensus,
    compute_cpu_bp,
    end_group,
    is_stopped,
    kill_leftovers,
    signal_group,
)
from edgechain.runtime.spawner import PID_FILE, Spawner, reap_orphan_groups, write_pid_file
from edgechain.types import AppId

RUN_DIR = "run"
"""Per-app directory the app may write besides its state (owned by the app user)."""
LOG_FILE = "app.log"

_log = logging.getLogger("edgechain.runtime")


@dataclass
class _App:
    """Mutable bookkeeping of one app (private: never leaves the runtime)."""

    spec: AppSpec
    proc: subprocess.Popen[bytes] | None
    status: AppStatus
    lock: threading.RLock
    last_sample: tuple[float, float] | None = None
    """(monotonic time, CPU seconds) at the previous ``stats`` call."""
    version: int | None = None
    """The spec version ``spec`` is, when known."""


class ProcessRuntime(AppDirectories):
    """``AppRuntime`` for plain processes, each app in its own session and state dir.

    ``app_user`` (``USER`` or ``USER:GROUP``) is who apps run as when this process is
    root; an unknown user, or root itself, is an :class:`AppUserError` here, at
    start-up. ``None`` asks for no drop, which a root node refuses too: apps never run
    as root. A node that is not root runs apps as itself and ignores ``app_user``.
    """

    def __init__(
        self,
        root: Path,
        *,
        stop_grace_s: float = 2.0,
        checkpoint_timeout_s: float = 1.0,
        die_with_node: bool = True,
        app_user: str | None = DEFAULT_APP_USER,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stop_grace_s = stop_grace_s
        self.checkpoint_timeout_s = checkpoint_timeout_s
        self.app_user = self._get_app_user(app_user)
        self._unusable = ""
        """Why no app can start here (the app user cannot reach the root), or ""."""
        if self.app_user is not None:
            # Search without listing: an app reaches its own directory by name only.
            self.root.chmod(0o711)
            blocked = find_unreachable(self.root, self.app_user)
            if blocked is not None:
                self._unusable = (
                    f"app user {self.app_user.name} cannot reach {blocked} on the way to "
                    f"{self.root}: make it searchable (chmod o+x) or use another data dir"
                )
                # Loud, but not fatal: the node still serves the chain; every start
                # fails with this message instead of running the app as root.
                _log.error("process runtime cannot run apps: %s", self._unusable)
        self._spawner = Spawner(die_with_node=die_with_node)
        self.census = GroupCensus()
        self.traffic = TrafficMeter()
        """Each app's TCP socket counters at its previous sample (``stats``)."""
        self._apps: dict[AppId, _App] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._load_recorded()
        self.reap_orphans()

    @staticmethod
    def _get_app_user(app_user: str | None) -> AppUser | None:
        if os.geteuid() != 0:
            return None  # already unprivileged: apps run as the node's user
        if app_user is None:
            raise AppUserError("the node runs as root and no app user is configured")
        return resolve_app_user(app_user)

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.PROCESS

    @property
    def kinds(self) -> frozenset[RuntimeKind]:
        return frozenset({RuntimeKind.PROCESS})

    @property
    def unusable_reason(self) -> str:
        """Why apps cannot start on this runtime ("" when they can)."""
        return self._unusable

    # --- paths ---------------------------------------------------------------------------

    def get_run_dir(self, app: AppId) -> Path:
        """The directory besides ``state/`` the app may write (its checkpoint ack)."""
        return self.get_app_dir(app) / RUN_DIR

    # --- bookkeeping ---------------------------------------------------------------------

    def _get(self, app: AppId) -> _App:
        with self._lock:
            record = self._apps.get(app)
        if record is None:
            raise AppNotFoundError(f"no app {bytes(app).hex()[:16]} on this runtime")
        return record

    def _get_or_add(self, app: AppId, spec: AppSpec) -> _App:
        with self._lock:
            if self._closed:
                raise AppRuntimeError("runtime is closed")
            record = self._apps.get(app)
            if record is None:
                record = _App(spec, None, AppStatus.STOPPED, threading.RLock())
                self._apps[app] = record
            return record

    def _is_current(self, app: AppId, record: _App) -> bool:
        """False once ``remove`` has dropped ``record`` (a caller that waited for its
        lock must start over, or it would run an app the runtime no longer tracks)."""
        with self._lock:
            return self._apps.get(app) is record

    @contextlib.contextmanager
    def _claim_stopped(self, app: AppId, spec: AppSpec, running: str) -> Iterator[_App]:
        """Hold the lock of the app's record (added when new), which must be stopped;
        when it runs, ``AppRuntimeError`` says "app NAME ``running``"."""
        while True:
            record = self._get_or_add(app, spec)
            with record.lock:
                if not self._is_current(app, record):
                    continue  # removed while we waited for its lock: a new record
                if self._refresh(record) is not AppStatus.STOPPED:
                    raise AppRuntimeError(f"app {spec.name!r} {running}")
                yield record
                return

    def _load_recorded(self) -> None:
        """Know the apps an earlier incarnation left here (stopped; state kept)."""
        for app, spec, version in self.read_releases(RuntimeKind.PROCESS):
            self._apps[app] = _App(spec, None, AppStatus.STOPPED, threading.RLock(), None, version)

    def _record_release(self, app: AppId, record: _App, spec: AppSpec, version: int | None) -> None:
        self.write_release(app, spec, version)
        record.spec = spec
        record.version = version

    def _refresh(self, record: _App) -> AppStatus:
        """Notice an app that exited on its own (and reap it)."""
        if record.proc is not None and record.proc.poll() is not None:
            kill_leftovers(record.proc.pid)
            record.proc = None
            record.status = AppStatus.STOPPED
        return record.status

    def _observe(self, record: _App) -> AppStatus:
        """``_refresh``, and FROZEN for a running app the fencing watchdog stopped."""
        status = self._refresh(record)
        return AppStatus.FROZEN if self._is_fenced(record) else status

    @staticmethod
    def _is_fenced(record: _App) -> bool:
        """The app's leader is stopped though the runtime did not pause it: frozen by
        the fencing watchdog (``runtime/watchdog.py``)."""
        proc = record.proc
        return record.status is AppStatus.RUNNING and proc is not None and is_stopped(proc.pid)

    def reap_orphans(self) -> int:
        """Kill app process groups left by an earlier incarnation of this runtime.

        Their state directories stay (state is never thrown away); only processes go.
        Returns how many groups were killed.
        """
        return reap_orphan_groups(self.root, self._owns_pid)

    def _owns_pid(self, pid: int) -> bool:
        """True when ``pid`` leads the group of an app this runtime runs."""
        with self._lock:
            return any(r.proc is not None and r.proc.pid == pid for r in self._apps.values())

    # --- process control -----------------------------------------------------------------

    def _prepare_dirs(self, app: AppId, *, fresh_state: bool = False) -> None:
        """Create the app's directories; with an app user, hand it what it may write.

        ``fresh_state``: the state dir was just unpacked by root from an archive (see
        ``give_tree``); otherwise it is the app's own, possibly from an older run as
        root, so ownership is checked on every start.
        """
        if self._unusable:
            raise AppUserError(self._unusable)
        app_dir = self.get_app_dir(app)
        app_dir.mkdir(exist_ok=True)
        for sub in (self.get_state_dir(app), self.get_run_dir(app)):
            sub.mkdir(exist_ok=True)
        user = self.app_user
        if user is None:
            return
        app_dir.chmod(0o711)  # root's: the app passes through to state/ and run/ only
        os.chown(app_dir, os.geteuid(), os.getegid())
        give_tree(self.get_state_dir(app), user, fresh=fresh_state)
        give_tree(self.get_run_dir(app), user)

    def _get_env(self, app: AppId) -> dict[str, str]:
        env = dict(os.environ)
        env[STATE_DIR_ENV] = str(self.get_state_dir(app))
        env[CHECKPOINT_ACK_ENV] = str(self.get_run_dir(app) / ACK_FILE)
        if self.app_user is not None:
            # The node's HOME (root's) is not the app's; its state dir is all it has.
            env.update(
                HOME=str(self.get_state_dir(app)),
                USER=self.app_user.name,
                LOGNAME=self.app_user.name,
            )
        return env

    def _spawn(
        self, app: AppId, spec: AppSpec, *, fresh_state: bool = False
    ) -> subprocess.Popen[bytes]:
        if not spec.command:
            raise AppRuntimeError(f"app {spec.name!r} has no command for the process runtime")
        self._prepare_dirs(app, fresh_state=fresh_state)
        app_dir = self.get_app_dir(app)
        state_dir = self.get_state_dir(app)
        env = self._get_env(app)
        try:
            proc = self._spawner.spawn(
                spec.command,
                cwd=state_dir,
                env=env,
                log_path=app_dir / LOG_FILE,
                user=self.app_user,
            )
        except OSError as exc:
            raise AppRuntimeError(f"cannot start {spec.name!r}: {exc}") from exc
        write_pid_file(app_dir / PID_FILE, proc.pid)
        return proc

    def _launch(
        self, record: _App, app: AppId, spec: AppSpec, *, fresh_state: bool = False
    ) -> None:
        """Spawn ``spec`` for ``record`` (held, stopped) and mark it running.

        The checkpoint hook's marker is removed first: it travels with the state, but
        the new process advertises its hook only once its SIGUSR1 handler is installed,
        and a snapshot or save that signalled it before then would kill it (SIGUSR1's
        default action; seen 2 times in 20 with a snapshot taken right after a start).
        """
        self.mark_paused(app, False)  # left by an earlier incarnation, if any
        (self.get_state_dir(app) / CHECKPOINT_MARKER).unlink(missing_ok=True)
        record.proc = self._spawn(app, spec, fresh_state=fresh_state)
        record.status = AppStatus.RUNNING
        record.last_sample = None

    def _terminate(self, record: _App, app: AppId, grace_s: float) -> None:
        """SIGTERM the group, wait ``grace_s``, then SIGKILL; reap everything. A group
        the watchdog froze gets SIGKILL alone (it is never continued)."""
        if record.proc is not None:
            if self._is_fenced(record):
                _log.warning("killing app %s frozen by the watchdog", bytes(app).hex()[:16])
                grace_s = 0
            end_group(record.proc, paused=record.status is AppStatus.PAUSED, grace_s=grace_s)
        self.mark_paused(app, False)
        record.proc = None
        record.status = AppStatus.STOPPED
        record.last_sample = None
        (self.get_app_dir(app) / PID_FILE).unlink(missing_ok=True)

    def _checkpoint_and_freeze(self, record: _App, app: AppId) -> bool:
        """Cooperative checkpoint: SIGUSR1, wait for the app's ack, then SIGSTOP."""
        proc = record.proc
        if proc is None:
            return False
        ack = self.get_run_dir(app) / ACK_FILE
        self.mark_paused(app, True)  # before the SIGSTOP: the watchdog must not thaw it
        if not checkpoint_and_freeze(proc, ack, self.checkpoint_timeout_s):
            self.mark_paused(app, False)
            return False
        record.status = AppStatus.PAUSED
        return True

    # --- the AppRuntime interface --------------------------------------------------------

    def start(self, app: AppId, spec: AppSpec, *, version: int | None = None) -> None:
        """Run ``spec`` (spec ``version``, when the caller knows it) from the app's
        state dir; the spec and version are recorded for ``get_release``."""
        _check_kind(spec)
        with self._claim_stopped(app, spec, "is already running") as record:
            self._launch(record, app, spec)
            self._record_release(app, record, spec, version)

    def stop(self, app: AppId) -> None:
        record = self._get(app)
        with record.lock:
            self._refresh(record)
            self._terminate(record, app, self.stop_grace_s)

    def pause(self, app: AppId) -> None:
        record = self._get(app)
        with record.lock:
            status = self._observe(record)
            if status is AppStatus.STOPPED or record.proc is None:
                raise AppRuntimeError("cannot pause a stopped app")
            if status is AppStatus.FROZEN:
                # A pause would hand the group to resume(), which continues it.
                raise AppRuntimeError("cannot pause an app frozen by the fencing watchdog")
            self.mark_paused(app, True)
            signal_group(record.proc.pid, signal.SIGSTOP)
            record.status = AppStatus.PAUSED

    def resume(self, app: AppId) -> None:
        record = self._get(app)
        with record.lock:
            (self.get_app_dir(app) / SAVED_ARCHIVE).unlink(missing_ok=True)
            status = self._refresh(record)
            if status is AppStatus.PAUSED and record.proc is not None:
                signal_group(record.proc.pid, signal.SIGCONT)
                record.status = AppStatus.RUNNING
                self.mark_paused(app, False)
            elif status is AppStatus.STOPPED:
                self._launch(record, app, record.spec)

    def stats(self, app: AppId) -> AppStats:
        record = self._get(app)
        with record.lock:
            status = self._observe(record)
            cpu_s, rss, sockets = 0.0, 0, {}
            now = time.monotonic()
            if record.proc is not None:
                # One pass over /proc serves every app of a sampling round.
                now, usage = self.census.get(record.proc.pid)
                if usage is not None:
                    cpu_s, rss = usage.cpu_s, usage.rss
                    sockets = self.census.get_tcp_bytes(usage)
            net = self.traffic.get_rate(app, now, sockets)
            cpu_bp = 0
            if record.last_sample is not None and record.proc is not None:
                then, cpu_then = record.last_sample
                cpu_bp = compute_cpu_bp(cpu_s - cpu_then, now - then)
            record.last_sample = (now, cpu_s) if record.proc is not None else None
            ram_bp = rss * BASIS_POINTS // max(1, psutil.virtual_memory().total)
            disk = get_tree_size(self.get_state_dir(app))
            return AppStats(app, cpu_bp, min(BASIS_POINTS, ram_bp), rss, disk, status, net)

    def freeze(self, app: AppId) -> bool:
        """``PrecopyRuntime``: checkpoint and freeze the app, else stop it gracefully;
        True when it is frozen in memory. ``resume`` undoes it."""
        record = self._get(app)
        with record.lock:
            # FROZEN: neither checkpointed nor archived live; _terminate kills it.
            status = self._observe(record)
            live = False
            marker = self.get_state_dir(app) / CHECKPOINT_MARKER
            if status is AppStatus.RUNNING and marker.exists():
                live = self._checkpoint_and_freeze(record, app)
            elif status is AppStatus.PAUSED:
                live = True  # already frozen by pause(): archive as it stands
            if not live:
                self._terminate(record, app, self.stop_grace_s)
            return live

    def get_precopy_dirs(self, app: AppId) -> tuple[Path, Path] | None:
        """``PrecopyRuntime``: the state dir, and the app dir (root's) for scratch."""
        self._get(app)
        return self.get_state_dir(app), self.get_app_dir(app)

    def save(self, app: AppId, *, include_image: bool = False) -> SavedState:
        del include_image  # a process app has no image: its command is on every node
        record = self._get(app)
        with record.lock:
            live = self.freeze(app)
            archive = self.get_app_dir(app) / SAVED_ARCHIVE
            try:
                size = write_archive_locked_out(self.get_state_dir(app), archive, self.app_user)
            except BaseException:
                self.resume(app)
                raise
            return SavedState(app, archive, size, live, includes_image=False)

    def restore(self, app: AppId, spec: AppSpec, archive: Path) -> None:
        """Unpack and start; the spec version is unknown here (``set_version``)."""
        self._restore(app, spec, lambda state: extract_state_archive(archive, state))

    def can_restore_staged(self, spec: AppSpec) -> bool:
        return spec.runtime is RuntimeKind.PROCESS

    def restore_staged(self, app: AppId, spec: AppSpec, staged: Path) -> None:
        """``PrecopyRuntime``: start the app from a pre-copy's staged state dir."""
        self._restore(app, spec, lambda state: install_state_dir(staged, state))

    def _restore(self, app: AppId, spec: AppSpec, install: Callable[[Path], object]) -> None:
        _check_kind(spec)
        with self._claim_stopped(app, spec, "is already running here") as record:
            try:
                self.get_app_dir(app).mkdir(exist_ok=True)
                install(self.get_state_dir(app))
                # Unpacked by root, in a directory no app could write: owned wholesale.
                self._launch(record, app, spec, fresh_state=True)
                self._record_release(app, record, spec, None)
            except BaseException:
                # Nothing of a failed restore stays: the origin still owns the app.
                self._forget(app, record)
                raise

    def retire(self, app: AppId) -> None:
        """End a handed-over app's group with SIGKILL alone (it is frozen for the save and
        must never run again here) and keep its directory: ``RetiringRuntime``."""
        record = self._get(app)
        with record.lock:
            self._refresh(record)
            self._terminate(record, app, grace_s=0)

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
        self.traffic.forget(app)
        with self._lock:
            if self._apps.get(app) is record:
                del self._apps[app]

    def list(self) -> tuple[AppInfo, ...]:
        with self._lock:
            items = list(self._apps.items())
        out = []
        for app, record in items:
            with record.lock:
                out.append(AppInfo(app, record.spec.name, self._observe(record)))
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

    def holds(self, app: AppId) -> bool:
        """Whether this runtime knows the app (running or not)."""
        with self._lock:
            return app in self._apps

    def get_release(self, app: AppId) -> tuple[AppSpec, int | None]:
        """The spec the app was last started with, and its version when known."""
        record = self._get(app)
        with record.lock:
            return record.spec, record.version

    def set_version(self, app: AppId, version: int) -> None:
        """Record the version of the spec the app runs (after a restore: the caller
        found the restored spec equal to that version's)."""
        record = self._get(app)
        with record.lock:
            self._record_release(app, record, record.spec, version)

    def get_pid(self, app: AppId) -> int | None:
        """The pid of the app's group leader, or None when it is not running."""
        record = self._get(app)
        with record.lock:
            self._refresh(record)
            return record.proc.pid if record.proc is not None else None

    def snapshot(self, app: AppId) -> StateSnapshot:
        """Copy the app's state for a replica while it keeps running here.

        A running app is frozen only while its state dir is archived (after its
        checkpoint hook, when it has one), then runs on; an app that is not running
        (stopped, paused, frozen) is archived as it stands and left so. The archive
        (``save``'s format: ``restore`` takes it) is the caller's to delete.
        """
        record = self._get(app)
        with record.lock:
            # Not FROZEN either: archive_while_frozen would continue the group after.
            proc = record.proc if self._observe(record) is AppStatus.RUNNING else None
            state = self.get_state_dir(app)
            hook = (state / CHECKPOINT_MARKER).exists()
            ack = self.get_run_dir(app) / ACK_FILE if hook else None
            archive = self.get_app_dir(app) / f"{SNAPSHOT_PREFIX}{secrets.token_hex(4)}.tar"
            try:
                size, paused_ms = archive_while_frozen(
                    proc,
                    state,
                    archive,
                    self.app_user,
                    ack=ack,
                    timeout_s=self.checkpoint_timeout_s,
                )
            except BaseException:
                archive.unlink(missing_ok=True)
                raise
            return StateSnapshot(app, archive, size, paused_ms, frozen=proc is not None)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            items = list(self._apps.items())
        for app, record in items:
            with record.lock:
                self._refresh(record)
                self._terminate(record, app, min(self.stop_grace_s, 1.0))
        self._spawner.close()

    def __enter__(self) -> ProcessRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_kind(spec: AppSpec) -> None:
    """A container app is never run as a process: its command on the host, ignoring
    the image it names, is not what was asked for."""
    if spec.runtime is not RuntimeKind.PROCESS:
        raise AppRuntimeError(f"app {spec.name!r} is a {spec.runtime.name.lower()} app")
