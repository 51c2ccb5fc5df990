"""Starting and ending a process app's group in its directories (``runtime/process.py``).

:class:`ProcessLauncher` prepares an app's directories (its ``state/`` and ``run/``
handed to the app user, the rest root's), builds its environment, spawns its command
(``runtime/spawner.py``), and ends its group: SIGTERM, a grace, SIGKILL; SIGKILL alone
for a group the fencing watchdog froze, which must never run again. It also takes the
cooperative checkpoint before a live save (SIGUSR1, the app's acknowledgement, SIGSTOP;
``runtime/checkpoint.py``). The caller holds the app's record lock
(``runtime/process_records.py``) around every call.

Who apps run as is decided here, once: a root node runs them as ``app_user`` (with no
supplementary groups; ``runtime/appuser.py``), and refuses to run them as root; a node
that is not root runs them as itself. A data dir the app user cannot reach makes every
start fail with the reason (:attr:`ProcessLauncher.unusable_reason`) instead of running
the app as root.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from edgechain.chain.model import AppSpec
from edgechain.runtime.app_cgroups import create_copy_cgroup, remove_copy_cgroup
from edgechain.runtime.app_log import read_log_end, take_kept_log
from edgechain.runtime.app_processes import STATE_DIR_ENV, get_state_dir_value
from edgechain.runtime.appuser import (
    AppUser,
    AppUserError,
    find_unreachable,
    give_tree,
    resolve_app_user,
)
from edgechain.runtime.base import (
    CHECKPOINT_ACK_ENV,
    CHECKPOINT_MARKER,
    AppDirectories,
    AppRuntimeError,
    AppStatus,
)
from edgechain.runtime.checkpoint import ACK_FILE, checkpoint_and_freeze
from edgechain.runtime.process_group import end_group
from edgechain.runtime.process_records import ProcessRecord
from edgechain.runtime.restart_backoff import get_last_line
from edgechain.runtime.spawner import APP_USER_MAX_PROCESSES, PID_FILE, Spawner, write_pid_file
from edgechain.types import AppId

RUN_DIR = "run"
"""Per-app directory the app may write besides its state (owned by the app user)."""
LOG_FILE = "app.log"
LAST_OUTPUT_BYTES = 4096
"""How much of a log's end is read for its last line."""


def read_last_output(log_path: Path) -> str:
    """The last line ``log_path`` holds (:func:`get_last_line` of its end); "" for none.

    A crash-looping app said only "exit code 2" (session 35's trial: a script its user
    could not read); the shell had written why into the app's log, which a user of the
    CLI cannot see."""
    end = read_log_end(log_path, LAST_OUTPUT_BYTES)
    return get_last_line(end[0]) if end is not None else ""


_log = logging.getLogger("edgechain.runtime")


def get_app_user(app_user: str | None) -> AppUser | None:
    """Who apps run as: ``app_user`` when this process is root (``AppUserError`` for an
    unknown user, root itself, or None), else None (apps run as the node's user)."""
    if os.geteuid() != 0:
        return None  # already unprivileged: apps run as the node's user
    if app_user is None:
        raise AppUserError("the node runs as root and no app user is configured")
    return resolve_app_user(app_user)


class ProcessLauncher:
    """Spawns and ends the apps under ``dirs.root`` as ``app_user`` (None: as this
    process); ``die_with_node``: apps get SIGKILL when the node dies (``Spawner``)."""

    def __init__(
        self,
        dirs: AppDirectories,
        app_user: AppUser | None,
        *,
        die_with_node: bool,
        max_processes: int = APP_USER_MAX_PROCESSES,
    ) -> None:
        self.dirs = dirs
        self.app_user = app_user
        self.unusable_reason = ""
        """Why no app can start here (the app user cannot reach the root), or ""."""
        if app_user is not None:
            # Search without listing: an app reaches its own directory by name only.
            dirs.root.chmod(0o711)
            blocked = find_unreachable(dirs.root, app_user)
            if blocked is not None:
                self.unusable_reason = (
                    f"app user {app_user.name} cannot reach {blocked} on the way to "
                    f"{dirs.root}: make it searchable (chmod o+x) or use another data dir"
                )
                # Loud, but not fatal: the node still serves the chain; every start
                # fails with this message instead of running the app as root.
                _log.error("process runtime cannot run apps: %s", self.unusable_reason)
        self._spawner = Spawner(die_with_node=die_with_node, max_processes=max_processes)

    def get_run_dir(self, app: AppId) -> Path:
        """The directory besides ``state/`` the app may write (its checkpoint ack)."""
        return self.dirs.get_app_dir(app) / RUN_DIR

    def _prepare_dirs(self, app: AppId, *, fresh_state: bool = False) -> None:
        """Create the app's directories; with an app user, hand it what it may write.

        ``fresh_state``: the state dir was just unpacked by root from an archive (see
        ``give_tree``); otherwise it is the app's own, possibly from an older run as
        root, so ownership is checked on every start.
        """
        if self.unusable_reason:
            raise AppUserError(self.unusable_reason)
        app_dir = self.dirs.get_app_dir(app)
        app_dir.mkdir(exist_ok=True)
        for sub in (self.dirs.get_state_dir(app), self.get_run_dir(app)):
            sub.mkdir(exist_ok=True)
        user = self.app_user
        if user is None:
            return
        app_dir.chmod(0o711)  # root's: the app passes through to state/ and run/ only
        os.chown(app_dir, os.geteuid(), os.getegid())
        give_tree(self.dirs.get_state_dir(app), user, fresh=fresh_state)
        give_tree(self.get_run_dir(app), user)

    def get_state_dir_value(self, app: AppId) -> str:
        """The app's state dir as its processes' environment names it: how the runtime
        finds those that left its process group (``runtime/app_processes.py``)."""
        return get_state_dir_value(str(self.dirs.get_app_dir(app)))

    def _get_env(self, app: AppId) -> dict[str, str]:
        env = dict(os.environ)
        env[STATE_DIR_ENV] = self.get_state_dir_value(app)
        env[CHECKPOINT_ACK_ENV] = str(self.get_run_dir(app) / ACK_FILE)
        if self.app_user is not None:
            # The node's HOME (root's) is not the app's; its state dir is all it has.
            env.update(
                HOME=str(self.dirs.get_state_dir(app)),
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
        app_dir = self.dirs.get_app_dir(app)
        take_kept_log(self.dirs.get_kept_log(app), app_dir / LOG_FILE)
        try:
            # A root node's app runs in a cgroup of its own where the host has one:
            # the set of processes it cannot leave (``runtime/app_cgroups.py``).
            cgroup = (
                None if self.app_user is None else create_copy_cgroup(self.get_state_dir_value(app))
            )
            proc = self._spawner.spawn(
                spec.command,
                cwd=self.dirs.get_state_dir(app),
                env=self._get_env(app),
                log_path=app_dir / LOG_FILE,
                user=self.app_user,
                cgroup_procs=cgroup,
            )
        except OSError as exc:
            raise AppRuntimeError(f"cannot start {spec.name!r}: {exc}") from exc
        write_pid_file(app_dir / PID_FILE, proc.pid)
        return proc

    def launch(
        self, record: ProcessRecord, app: AppId, spec: AppSpec, *, fresh_state: bool = False
    ) -> None:
        """Spawn ``spec`` for ``record`` (held, stopped) and mark it running.

        The checkpoint hook's marker is removed first: it travels with the state, but
        the new process advertises its hook only once its SIGUSR1 handler is installed,
        and a snapshot or save that signalled it before then would kill it (SIGUSR1's
        default action; seen 2 times in 20 with a snapshot taken right after a start).
        """
        self.dirs.mark_paused(app, False)  # left by an earlier incarnation, if any
        (self.dirs.get_state_dir(app) / CHECKPOINT_MARKER).unlink(missing_ok=True)
        record.proc = self._spawn(app, spec, fresh_state=fresh_state)
        record.state_dir = self.get_state_dir_value(app)
        record.status = AppStatus.RUNNING
        record.last_sample = None
        record.exit_code = None

    def terminate(self, record: ProcessRecord, app: AppId, grace_s: float) -> None:
        """SIGTERM the group, wait ``grace_s``, then SIGKILL; reap everything. A group
        the watchdog froze gets SIGKILL alone (it is never continued)."""
        if record.proc is not None:
            if record.is_fenced():
                _log.warning("killing app %s frozen by the watchdog", bytes(app).hex()[:16])
                grace_s = 0
            end_group(
                record.proc,
                paused=record.status is AppStatus.PAUSED,
                grace_s=grace_s,
                state_dir=self.get_state_dir_value(app),
            )
        remove_copy_cgroup(self.get_state_dir_value(app))
        self.dirs.mark_paused(app, False)
        record.proc = None
        record.status = AppStatus.STOPPED
        record.last_sample = None
        record.exit_code = None  # stopped on purpose: not an exit of its own
        (self.dirs.get_app_dir(app) / PID_FILE).unlink(missing_ok=True)

    def checkpoint_and_freeze(self, record: ProcessRecord, app: AppId, timeout_s: float) -> bool:
        """Cooperative checkpoint: SIGUSR1, wait for the app's ack, then SIGSTOP."""
        proc = record.proc
        if proc is None:
            return False
        ack = self.get_run_dir(app) / ACK_FILE
        self.dirs.mark_paused(app, True)  # before the SIGSTOP: the watchdog must not thaw it
        if not checkpoint_and_freeze(proc, ack, timeout_s, self.get_state_dir_value(app)):
            self.dirs.mark_paused(app, False)
            return False
        record.status = AppStatus.PAUSED
        return True

    def close(self) -> None:
        self._spawner.close()
