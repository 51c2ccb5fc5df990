"""Starting app processes so they die with their node, and finding them again after.

Apps die with their node: with ``die_with_node`` each app is started through
``setpriv --pdeathsig KILL`` from one long-lived spawner thread (:class:`Spawner`), so
if the node process dies (killed mid-restore, say) its apps get SIGKILL instead of
running on unseen next to the copy the origin resumes. Each app gets its own session
(its own process group, ``runtime/process_group.py``), its log file as stdout and
stderr, and, when the node is root, the app user's uid and gid with no supplementary
groups (``runtime/appuser.py``).

A pid file per app directory (leader pid and its creation time) lets a restarted runtime
reap orphans of an earlier incarnation (:func:`reap_orphan_groups`); the creation time
keeps it from killing an unrelated process that reused the pid.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from edgechain.runtime.app_cgroups import (
    find_node_members,
    kill_copy,
    remove_empty_cgroups,
    remove_stale_cgroups,
)
from edgechain.runtime.app_processes import get_state_dir_value, is_other_copy, signal_stragglers
from edgechain.runtime.appuser import AppUser
from edgechain.runtime.process_group import signal_group
from edgechain.telemetry.cpu import Component, charge_thread_cpu

PID_FILE = "pid"
"""In an app's directory: its group leader's pid and creation time (root's file)."""
APP_USER_MAX_PROCESSES = 4096
"""``RLIMIT_NPROC`` of every process app a root node runs as its app user: the app
user's processes and threads on the host, all its apps together, may not pass it. Why:
a process app has no pids cgroup (a container has ``pids_limit``), and a fork bomb as
``nobody`` would fill the host's pid space first (``kernel.pid_max`` 32768 here, below
the default ``RLIMIT_NPROC`` of 96369), after which no node, watchdog or app on the host
could fork. With the limit, the app user's forks fail and the rest of the host goes
on. Not applied to a node that is not root: its apps run as its own user, whose count
includes the nodes themselves."""


class Spawner:
    """Forks every app from one long-lived thread, through ``setpriv --pdeathsig KILL``
    when ``die_with_node`` and setpriv (util-linux) is installed."""

    def __init__(self, *, die_with_node: bool, max_processes: int = APP_USER_MAX_PROCESSES) -> None:
        self._setpriv = shutil.which("setpriv") if die_with_node else None
        self._prlimit = shutil.which("prlimit")
        self.max_processes = max_processes
        """``RLIMIT_NPROC`` of apps run as an app user (``APP_USER_MAX_PROCESSES``)."""
        # One long-lived thread forks every app: the parent-death signal fires when the
        # *thread* that forked a child exits, so forking from short-lived executor
        # threads would kill apps at random.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgechain-spawn")

    def spawn(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        env: dict[str, str],
        log_path: Path,
        user: AppUser | None,
        cgroup_procs: str | None = None,
    ) -> subprocess.Popen[bytes]:
        """Run ``command`` in a new session as ``user`` (None: as this process), output
        appended to ``log_path``; with ``cgroup_procs`` (a cgroup's ``cgroup.procs``,
        ``runtime/app_cgroups.py``), inside that cgroup. Raises ``OSError`` when it
        cannot start."""
        argv = list(command)
        if user is not None:
            argv = self._limit_processes(argv)
        if cgroup_procs is not None and user is not None:
            argv = self._join_cgroup(argv, cgroup_procs, user)
            user = None  # setpriv drops root, after the join
        elif self._setpriv is not None:
            # Credentials change in the child before it execs setpriv (Popen's user and
            # group), so the death signal setpriv sets is not cleared by that change.
            argv = [self._setpriv, "--pdeathsig", "KILL", "--", *argv]

        def fork() -> subprocess.Popen[bytes]:
            # The log stays root's (0600): the app writes it through the inherited fd.
            fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.fchmod(fd, 0o600)
            with open(fd, "ab") as log:
                return subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    user=user.uid if user is not None else None,
                    group=user.gid if user is not None else None,
                    extra_groups=[] if user is not None else None,
                )

        # The fork's CPU (copying a node's page tables) is the app manager's.
        return self._thread.submit(charge_thread_cpu(Component.APPS, fork)).result()

    def _join_cgroup(self, argv: list[str], cgroup_procs: str, user: AppUser) -> list[str]:
        """``argv`` started by a root shell that writes its own pid to ``cgroup_procs``
        and then execs setpriv, which drops to ``user`` (no supplementary groups) and
        sets the death signal after that change (the kernel clears it on one), then
        execs ``argv``. Joining from inside the child is what makes it race-free: the
        app's first fork is already in the cgroup. The shell execs nothing when the
        write fails. Without setpriv, ``OSError``: joining needs root, which the app
        must not keep, and Popen's own drop comes before the shell runs."""
        setpriv = self._setpriv or shutil.which("setpriv")
        if setpriv is None:
            raise OSError("setpriv (util-linux) is not installed: cannot start apps in a cgroup")
        drop = [setpriv, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups"]
        if self._setpriv is not None:
            drop += ["--pdeathsig", "KILL"]
        join = 'echo $$ > "$1" && shift && exec "$@"'
        return ["/bin/sh", "-c", join, "edgechain-join", cgroup_procs, *drop, "--", *argv]

    def _limit_processes(self, argv: list[str]) -> list[str]:
        """``argv`` under ``prlimit --nproc`` (util-linux, like setpriv): set in the
        child before the app's first instruction, without a ``preexec_fn`` (unsafe in a
        threaded node). Without prlimit, ``OSError``: an app user's app never starts
        unlimited."""
        if self._prlimit is None:
            raise OSError("prlimit (util-linux) is not installed: cannot limit app processes")
        limit = self.max_processes
        return [self._prlimit, f"--nproc={limit}:{limit}", "--", *argv]

    def close(self) -> None:
        """Stop the spawner thread (after the last ``spawn``)."""
        self._thread.shutdown(wait=True)


def write_pid_file(path: Path, pid: int) -> None:
    """Record ``pid`` and its creation time (0 when it is already gone) in ``path``."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = 0.0
    path.write_text(f"{pid} {created}\n")


def read_pid_file(path: Path) -> tuple[int, float] | None:
    try:
        pid_text, created_text = path.read_text().split()
        return int(pid_text), float(created_text)
    except (OSError, ValueError):
        return None


def reap_orphan_groups(root: Path, is_owned: Callable[[int], bool]) -> int:
    """Kill the process groups recorded in pid files under ``root`` (``<root>/*/pid``)
    whose leader still runs and is not ``is_owned``; remove those pid files. Kill too
    the members of each of the node's app cgroups (``app_cgroups``) none of which is
    ``is_owned``.

    Returns how many groups were killed.
    """
    killed = 0
    reaped: set[str] = set()
    for pid_file in root.glob(f"*/{PID_FILE}"):
        entry = read_pid_file(pid_file)
        if entry is None:
            continue
        pid, created = entry
        if is_owned(pid):
            continue
        copy = get_state_dir_value(str(pid_file.parent))
        try:
            alive = abs(psutil.Process(pid).create_time() - created) < 0.01
        except psutil.Error:
            alive = False
        alive = alive and not is_other_copy(pid, copy)
        # The processes that left its group go too, the leader alive or not (a kill -9
        # of the node leaves the pid file of an app whose leader may have exited since).
        reaped.add(copy)
        stragglers = signal_stragglers(copy, None, signal.SIGKILL)
        if (alive and signal_group(pid, signal.SIGKILL)) or stragglers:
            killed += 1
        pid_file.unlink(missing_ok=True)
    # A copy no pid file names (the node died between a spawn and its pid file) is in
    # the node's app cgroups all the same.
    for app_dir, members in find_node_members(str(root)).items():
        copy = get_state_dir_value(app_dir)
        if copy in reaped or any(is_owned(pid) for pid in members):
            continue  # killed above (its members may not have exited yet), or ours
        if kill_copy(copy):
            killed += 1
    remove_empty_cgroups(str(root))
    remove_stale_cgroups()  # other nodes' leftovers, once old
    return killed
