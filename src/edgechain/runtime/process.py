"""The process runtime: the embedded default (DESIGN.md, "Runtimes").

Runs any command (``AppSpec.command``) as a plain process with no daemon. Each app has
its own directory ``<root>/<app id hex>/`` holding ``state/`` (given to the app through
``EDGECHAIN_STATE_DIR``; the only thing a migration carries), ``app.log`` (its output,
kept under ``app_log.MAX_LOG_BYTES`` by every usage sample) and the runtime's own
bookkeeping. Each app runs in its own session, so its whole process group
is signalled and killed together: stopping an app never leaves its children behind.

:class:`ProcessRuntime` is the ``AppRuntime`` implementation: it carries out each call
on the app's record under its lock, composing the pieces that do the work, each in its
own module:

* ``runtime/process_records.py``: each app's record (spec, process, status) and the
  table of them;
* ``runtime/process_launch.py``: who apps run as, their directories and environment,
  spawning and ending their groups, the checkpoint before a live save;
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

import logging
import secrets
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from edgechain.chain.model import BASIS_POINTS, AppSpec, RuntimeKind
from edgechain.runtime.app_cgroups import remove_empty_cgroups
from edgechain.runtime.app_log import LogTail, keep_log, list_kept_logs, read_log_tail, trim_log
from edgechain.runtime.appuser import DEFAULT_APP_USER
from edgechain.runtime.archive import extract_state_archive, get_tree_size, install_state_dir
from edgechain.runtime.base import (
    CHECKPOINT_MARKER,
    AppDirectories,
    AppInfo,
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
    write_archive_locked_out,
)
from edgechain.runtime.net_traffic import TrafficMeter
from edgechain.runtime.process_group import GroupCensus, compute_cpu_bp, signal_group
from edgechain.runtime.process_launch import (
    LOG_FILE,
    ProcessLauncher,
    get_app_user,
    read_last_output,
)
from edgechain.runtime.process_records import ProcessRecord, ProcessRecords
from edgechain.runtime.spawner import APP_USER_MAX_PROCESSES, reap_orphan_groups
from edgechain.runtime.usage import get_host_memory
from edgechain.types import AppId

_log = logging.getLogger("edgechain.runtime")


class ProcessRuntime(AppDirectories):
    """``AppRuntime`` for plain processes, each app in its own session and state dir.

    ``app_user`` (``USER`` or ``USER:GROUP``) is who apps run as when this process is
    root; an unknown user, or root itself, is an :class:`AppUserError` here, at
    start-up. ``None`` asks for no drop, which a root node refuses too: apps never run
    as root. A node that is not root runs apps as itself and ignores ``app_user``.
    ``max_app_processes``: the app user's ``RLIMIT_NPROC`` (``spawner.py``).
    """

    def __init__(
        self,
        root: Path,
        *,
        stop_grace_s: float = 2.0,
        checkpoint_timeout_s: float = 1.0,
        die_with_node: bool = True,
        app_user: str | None = DEFAULT_APP_USER,
        max_app_processes: int = APP_USER_MAX_PROCESSES,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stop_grace_s = stop_grace_s
        self.checkpoint_timeout_s = checkpoint_timeout_s
        self.app_user = get_app_user(app_user)
        self._launcher = ProcessLauncher(
            self, self.app_user, die_with_node=die_with_node, max_processes=max_app_processes
        )
        self.census = GroupCensus()
        self.traffic = TrafficMeter()
        """Each app's TCP socket counters at its previous sample (``stats``)."""
        self._kept_logs = list_kept_logs(self.get_kept_logs_dir())
        self._records = ProcessRecords()
        for app, spec, version in self.read_releases(RuntimeKind.PROCESS):
            self._records.add_recorded(app, spec, version)
        self.reap_orphans()

    @property
    def kind(self) -> RuntimeKind:
        return RuntimeKind.PROCESS

    @property
    def kinds(self) -> frozenset[RuntimeKind]:
        return frozenset({RuntimeKind.PROCESS})

    @property
    def unusable_reason(self) -> str:
        """Why apps cannot start on this runtime ("" when they can)."""
        return self._launcher.unusable_reason

    def get_run_dir(self, app: AppId) -> Path:
        """The directory besides ``state/`` the app may write (its checkpoint ack)."""
        return self._launcher.get_run_dir(app)

    def reap_orphans(self) -> int:
        """Kill app process groups left by an earlier incarnation of this runtime.

        Their state directories stay (state is never thrown away); only processes go.
        Returns how many groups were killed.
        """
        return reap_orphan_groups(self.root, self._records.owns_pid)

    def _record_release(
        self, app: AppId, record: ProcessRecord, spec: AppSpec, version: int | None
    ) -> None:
        self.write_release(app, spec, version)
        record.spec = spec
        record.version = version

    # --- the AppRuntime interface --------------------------------------------------------

    def start(self, app: AppId, spec: AppSpec, *, version: int | None = None) -> None:
        """Run ``spec`` (spec ``version``, when the caller knows it) from the app's
        state dir; the spec and version are recorded for ``get_release``."""
        _check_kind(spec)
        with self._records.claim_stopped(app, spec, "is already running") as record:
            self._launcher.launch(record, app, spec)
            self._record_release(app, record, spec, version)

    def stop(self, app: AppId) -> None:
        record = self._records.get(app)
        with record.lock:
            record.refresh()
            self._launcher.terminate(record, app, self.stop_grace_s)

    def pause(self, app: AppId) -> None:
        record = self._records.get(app)
        with record.lock:
            status = record.observe()
            if status is AppStatus.STOPPED or record.proc is None:
                raise AppRuntimeError("cannot pause a stopped app")
            if status is AppStatus.FROZEN:
                # A pause would hand the group to resume(), which continues it.
                raise AppRuntimeError("cannot pause an app frozen by the fencing watchdog")
            self.mark_paused(app, True)
            signal_group(record.proc.pid, signal.SIGSTOP, record.state_dir)
            record.status = AppStatus.PAUSED

    def resume(self, app: AppId) -> None:
        record = self._records.get(app)
        with record.lock:
            (self.get_app_dir(app) / SAVED_ARCHIVE).unlink(missing_ok=True)
            status = record.refresh()
            if status is AppStatus.PAUSED and record.proc is not None:
                signal_group(record.proc.pid, signal.SIGCONT, record.state_dir)
                record.status = AppStatus.RUNNING
                self.mark_paused(app, False)
            elif status is AppStatus.STOPPED:
                self._launcher.launch(record, app, record.spec)

    def stats(self, app: AppId) -> AppStats:
        record = self._records.get(app)
        with record.lock:
            status = record.observe()
            cpu_s, rss, sockets = 0.0, 0, {}
            now = time.monotonic()
            if record.proc is not None:
                # One pass over /proc serves every app of a sampling round.
                now, usage = (
                    self.census.get(record.proc.pid)
                    if record.state_dir is None
                    else self.census.get_copy(record.proc.pid, record.state_dir)
                )
                if usage is not None:
                    cpu_s, rss = usage.cpu_s, usage.rss
                    sockets = self.census.get_tcp_bytes(usage)
            net = self.traffic.get_rate(app, now, sockets)
            cpu_bp = 0
            if record.last_sample is not None and record.proc is not None:
                then, cpu_then = record.last_sample
                cpu_bp = compute_cpu_bp(cpu_s - cpu_then, now - then)
            record.last_sample = (now, cpu_s) if record.proc is not None else None
            ram_bp = rss * BASIS_POINTS // get_host_memory()
            disk = get_tree_size(self.get_state_dir(app))
            dropped = trim_log(self.get_app_dir(app) / LOG_FILE)
            if dropped:
                _log.info("log of %s trimmed: %d bytes dropped", app.hex()[:16], dropped)
            return AppStats(app, cpu_bp, min(BASIS_POINTS, ram_bp), rss, disk, status, net)

    def freeze(self, app: AppId) -> bool:
        """``PrecopyRuntime``: checkpoint and freeze the app, else stop it gracefully;
        True when it is frozen in memory. ``resume`` undoes it."""
        record = self._records.get(app)
        with record.lock:
            # FROZEN: neither checkpointed nor archived live; terminate kills it.
            status = record.observe()
            live = False
            marker = self.get_state_dir(app) / CHECKPOINT_MARKER
            if status is AppStatus.RUNNING and marker.exists():
                live = self._launcher.checkpoint_and_freeze(record, app, self.checkpoint_timeout_s)
            elif status is AppStatus.PAUSED:
                live = True  # already frozen by pause(): archive as it stands
            if not live:
                self._launcher.terminate(record, app, self.stop_grace_s)
            return live

    def get_precopy_dirs(self, app: AppId) -> tuple[Path, Path] | None:
        """``PrecopyRuntime``: the state dir, and the app dir (root's) for scratch."""
        self._records.get(app)
        return self.get_state_dir(app), self.get_app_dir(app)

    def save(self, app: AppId, *, include_image: bool = False) -> SavedState:
        del include_image  # a process app has no image: its command is on every node
        record = self._records.get(app)
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
        with self._records.claim_stopped(app, spec, "is already running here") as record:
            try:
                self.get_app_dir(app).mkdir(exist_ok=True)
                install(self.get_state_dir(app))
                # Unpacked by root, in a directory no app could write: owned wholesale.
                self._launcher.launch(record, app, spec, fresh_state=True)
                self._record_release(app, record, spec, None)
            except BaseException:
                # Nothing of a failed restore stays: the origin still owns the app.
                self._forget(app, record)
                raise

    def retire(self, app: AppId) -> None:
        """End a handed-over app's group with SIGKILL alone (it is frozen for the save and
        must never run again here) and keep its directory: ``RetiringRuntime``."""
        record = self._records.get(app)
        with record.lock:
            record.refresh()
            self._launcher.terminate(record, app, grace_s=0)

    def remove(self, app: AppId) -> None:
        record = self._records.find(app)
        if record is None:
            self._delete_app_dir(app)
            return
        with record.lock:
            self._forget(app, record)

    def _forget(self, app: AppId, record: ProcessRecord) -> None:
        record.refresh()
        # The state now lives elsewhere: no grace needed, the group just goes.
        self._launcher.terminate(record, app, grace_s=0)
        self._delete_app_dir(app)
        self.traffic.forget(app)
        self._records.drop(app, record)

    def _delete_app_dir(self, app: AppId) -> None:
        """Delete the app's directory; its log is kept (``app_log.keep_log``)."""
        try:
            keep_log(self.get_app_dir(app) / LOG_FILE, self.get_kept_log(app))
        except OSError as exc:
            _log.warning("log of %s not kept: %s", app.hex()[:16], exc)
        self.list_kept_logs()  # and old ones went
        shutil.rmtree(self.get_app_dir(app), ignore_errors=True)

    def list_kept_logs(self) -> None:
        """Read again which apps' logs are kept (after a keep, which may prune, or a
        container's keep: its runtime shares the directories)."""
        self._kept_logs = list_kept_logs(self.get_kept_logs_dir())

    def get_kept_logs(self) -> frozenset[AppId]:
        """The apps whose log is kept here (no I/O: the reconcile pass asks each slot)."""
        return self._kept_logs

    def discard_log(self, app: AppId) -> None:
        """Delete the app's kept log: the app left the chain."""
        self.get_kept_log(app).unlink(missing_ok=True)
        self._kept_logs -= {app}

    def list(self) -> tuple[AppInfo, ...]:
        out = []
        for app, record in self._records.items():
            with record.lock:
                status = record.observe()
                code = record.exit_code
                said = ""
                if code is not None:  # a run that ended on its own: say why, if it did
                    said = read_last_output(self.get_app_dir(app) / LOG_FILE)
                out.append(AppInfo(app, record.spec.name, status, code, said))
        return tuple(out)

    def is_running(self, app: AppId) -> bool:
        record = self._records.find(app)
        if record is None:
            return False
        with record.lock:
            return record.refresh() is not AppStatus.STOPPED

    def has_image(self, spec: AppSpec) -> bool:
        del spec
        return True

    def holds(self, app: AppId) -> bool:
        """Whether this runtime knows the app (running or not)."""
        return self._records.holds(app)

    def get_log_tail(self, app: AppId, lines: int) -> LogTail | None:
        """The end of the app's ``app.log`` on this node, or of the log kept when its
        copy left (None: neither)."""
        tail = read_log_tail(self.get_app_dir(app) / LOG_FILE, lines)
        return tail if tail is not None else read_log_tail(self.get_kept_log(app), lines)

    def is_empty(self) -> bool:
        """Whether this runtime knows no app at all; its table is in memory, so the
        answer never blocks (``NodeRuntimes.is_known_empty``)."""
        return self._records.is_empty()

    def get_release(self, app: AppId) -> tuple[AppSpec, int | None]:
        """The spec the app was last started with, and its version when known."""
        record = self._records.get(app)
        with record.lock:
            return record.spec, record.version

    def set_version(self, app: AppId, version: int) -> None:
        """Record the version of the spec the app runs (after a restore: the caller
        found the restored spec equal to that version's)."""
        record = self._records.get(app)
        with record.lock:
            self._record_release(app, record, record.spec, version)

    def get_pid(self, app: AppId) -> int | None:
        """The pid of the app's group leader, or None when it is not running."""
        record = self._records.get(app)
        with record.lock:
            record.refresh()
            return record.proc.pid if record.proc is not None else None

    def snapshot(self, app: AppId) -> StateSnapshot:
        """Copy the app's state for a replica while it keeps running here.

        A running app is frozen only while its state dir is archived (after its
        checkpoint hook, when it has one), then runs on; an app that is not running
        (stopped, paused, frozen) is archived as it stands and left so. The archive
        (``save``'s format: ``restore`` takes it) is the caller's to delete.
        """
        record = self._records.get(app)
        with record.lock:
            # Not FROZEN either: archive_while_frozen would continue the group after.
            proc = record.proc if record.observe() is AppStatus.RUNNING else None
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
        for app, record in self._records.close():
            with record.lock:
                record.refresh()
                self._launcher.terminate(record, app, min(self.stop_grace_s, 1.0))
        self._launcher.close()
        remove_empty_cgroups(str(self.root))  # those of apps that ended on their own

    def __enter__(self) -> ProcessRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_kind(spec: AppSpec) -> None:
    """A container app is never run as a process: its command on the host, ignoring
    the image it names, is not what was asked for."""
    if spec.runtime is not RuntimeKind.PROCESS:
        raise AppRuntimeError(f"app {spec.name!r} is a {spec.runtime.name.lower()} app")
