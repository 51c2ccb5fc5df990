"""Every process of one app copy, the ones that left its process group included.

The process runtime starts each app in a session of its own and signals that process
group (``runtime/process_group.py``). A process the app starts with ``setsid`` (a
daemon, ``nohup`` and a double fork, a shell script's ``setsid cmd &``) leaves the
group, and a group signal no longer reaches it: a trial of session 38 moved such an
app to another node, and the escaped child kept running on the old one next to the new
copy's, which is an app running twice. It still carries the environment it was started
with, and the runtime puts the copy's own state directory in it
(:data:`STATE_DIR_ENV`, an absolute path, distinct for every node and app on a host),
so ``/proc/PID/environ`` names the copy each process belongs to. On a root node a
copy's processes are also the members of its cgroup (``runtime/app_cgroups.py``),
which finds those that replaced their environment too.

Every signal the runtime and the fencing watchdog send to an app's group also goes to
its *stragglers*: the processes whose environment names the copy's state directory but
which are not in the group (:func:`signal_stragglers`). A process that replaced its
whole environment (``env -i``) is found only by its cgroup, so only on a root node
with a cgroup v2 hierarchy (``app_cgroups.get_unavailable_reason``).

A container is one, but not for a signal: its engine ends every process in it, yet the
fencing watchdog freezes an app with SIGSTOP to the group of the container's init (the
engine may be down with the node), and a process started in the container with
``setsid`` left that group; its environment names the container's ``/state``, not a
directory here. Every process in the init's PID namespace is the container's, so the
watchdog finds those by namespace (:func:`find_namespace_members`,
:func:`signal_namespace_stragglers`).

Stdlib only: the watchdog (``runtime/watchdog.py``) imports it.
"""

from __future__ import annotations

import os
import signal
from functools import partial

from edgechain.runtime.app_cgroups import find_copy_members, find_node_members, kill_copy

TYPE_CHECKING = False  # as in lease.py: typing would cost every watchdog memory
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator

STATE_DIR_ENV = "EDGECHAIN_STATE_DIR"
"""The variable that gives an app its state directory (and names the copy here)."""

STATE_DIR_NAME = "state"
"""An app's state directory under its app directory (``<apps>/<app hex>/state``)."""


def get_state_dir_value(app_dir: str) -> str:
    """What :data:`STATE_DIR_ENV` holds for the app whose directory is ``app_dir``:
    absolute, so the node and its watchdog, started from any directory, agree."""
    return os.path.join(os.path.abspath(app_dir), STATE_DIR_NAME)


def _list_other_pids() -> Iterator[int]:
    """The pid of every process in ``/proc`` but this one (it may be gone by the time
    the caller looks at it)."""
    own = os.getpid()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != own:
            yield int(name)


PF_KTHREAD = 0x00200000
"""``/proc/PID/stat``'s flag of a kernel thread (``include/linux/sched.h``)."""


def read_stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after ``pid (comm)``, the state letter first;
    None when ``pid`` is gone or not ours to read. The command name may hold spaces and
    parentheses: the fields follow the last ``)``."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2 :].split()


def is_user_task_without_environment(pid: int) -> bool:
    """Whether ``pid``, whose ``/proc/PID/environ`` read empty, is a live user process:
    one in the middle of an ``execve`` (the kernel sets the new environment a moment
    after the old one is gone), or one started with none at all (``env -i``). Kernel
    threads and zombies have none either, and are neither."""
    fields = read_stat_fields(pid)
    if fields is None or len(fields) < 7 or fields[0] in (b"Z", b"X"):
        return False
    return not int(fields[6]) & PF_KTHREAD


def read_environ(pid: int) -> bytes | None:
    """``/proc/PID/environ`` (NUL-separated entries), or None when ``pid`` is gone or
    not ours to read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return file.read()
    except OSError:
        return None


def _read_environments(unsettled: list[int] | None = None) -> Iterator[tuple[int, bytes]]:
    """(pid, NUL-separated environment) of every process but this one that we may
    read, with a NUL in front, so that every entry sits between two NULs. A user
    process whose environment reads empty is added to ``unsettled`` when given
    (:func:`is_user_task_without_environment`): it may be an app's mid-exec."""
    for pid in _list_other_pids():
        environ = read_environ(pid)
        if environ is None:  # gone, or not ours to read
            continue
        if not environ and unsettled is not None and is_user_task_without_environment(pid):
            unsettled.append(pid)
        yield pid, b"\0" + environ


def find_app_pids(state_dir: str, unsettled: list[int] | None = None) -> list[int]:
    """The pids of every process whose environment sets :data:`STATE_DIR_ENV` to
    ``state_dir`` exactly, and of every member of the copy's cgroup; processes we may
    not read are skipped, and those whose environment could not be told yet go to
    ``unsettled`` (:func:`_read_environments`)."""
    wanted = b"\0" + f"{STATE_DIR_ENV}={state_dir}".encode() + b"\0"
    found = [pid for pid, environ in _read_environments(unsettled) if wanted in environ]
    return _merge(found, find_copy_members(state_dir))


def is_other_copy(pid: int, state_dir: str) -> bool:
    """Whether process ``pid``'s environment names an app copy other than the one whose
    state directory is ``state_dir``: not that copy's, whatever a pid file says. A data
    directory copied on the same host carries its original's pid files, pids and start
    times included; the copy must not take the original's apps for its own orphans.
    False when the environment names no copy or cannot be read (an app may clear it:
    a leftover is then known by its pid file alone)."""
    environ = read_environ(pid)
    if environ is None:
        return False
    prefix = f"{STATE_DIR_ENV}=".encode()
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return entry[len(prefix) :] != state_dir.encode()
    return False


def _merge(found: list[int], members: list[int]) -> list[int]:
    """``found`` and then the cgroup ``members`` it lacks (``app_cgroups``: those
    whose environment no longer names the copy)."""
    known = set(found)
    return found + [pid for pid in members if pid not in known]


def find_copies_under(apps_dir: str) -> dict[str, list[int]]:
    """Every process of an app copy under ``apps_dir`` (one node's apps), by the copy's
    state directory: one pass over ``/proc`` for all of them."""
    prefix = b"\0" + f"{STATE_DIR_ENV}={os.path.abspath(apps_dir)}{os.sep}".encode()
    head = len(STATE_DIR_ENV) + 2  # the NUL in front, then NAME=
    copies: dict[str, list[int]] = {}
    for pid, environ in _read_environments():
        at = environ.find(prefix)
        if at < 0:
            continue
        value = environ[at + head : environ.index(b"\0", at + 1)]
        copies.setdefault(value.decode(errors="replace"), []).append(pid)
    for app_dir, members in find_node_members(apps_dir).items():
        state_dir = get_state_dir_value(app_dir)
        copies[state_dir] = _merge(copies.get(state_dir, []), members)
    return copies


MAX_ROUNDS = 5
"""Passes over ``/proc`` of :func:`signal_stragglers`: a process may fork between the
pass that found it and its signal; its child is found by the next pass (a stopped or
killed parent forks no more). A process caught in the middle of an ``execve`` has an
empty environment for that moment, so a pass that met a user process without one it
had not met before is followed by another (its exec is over by then), even if it found
nothing new: otherwise a straggler exec'ing at the last pass escaped a move's kill."""


def signal_stragglers(state_dir: str, pgid: int | None, sig: signal.Signals) -> int:
    """Send ``sig`` to the processes of the copy at ``state_dir`` outside process group
    ``pgid`` (the group's own members got the group's signal; None: send to all),
    pass after pass until one finds none it has not signalled; return how many got it.
    A SIGKILL first goes to the copy's whole cgroup at once (``app_cgroups``)."""
    if sig == signal.SIGKILL:
        kill_copy(state_dir)
    return _signal_outside_group(partial(find_app_pids, state_dir), pgid, sig)


def get_pid_namespace(pid: int) -> str | None:
    """The PID namespace ``pid`` lives in (its ``/proc/PID/ns/pid`` link, such as
    ``pid:[4026531836]``); None when it is gone or not ours to inspect."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def find_namespace_members(namespaces: Collection[str]) -> dict[str, list[int]]:
    """The pids of every process in each of ``namespaces`` (as
    :func:`get_pid_namespace` names them), this one excluded: one pass over ``/proc``."""
    members: dict[str, list[int]] = {}
    if not namespaces:
        return members
    for pid in _list_other_pids():
        namespace = get_pid_namespace(pid)
        if namespace is not None and namespace in namespaces:
            members.setdefault(namespace, []).append(pid)
    return members


def get_foreign_namespace(pid: int) -> str | None:
    """The PID namespace of ``pid`` when it is known and not this process's: a
    container's, for an app's leader; None for a process app (it shares the node's
    namespace) and for a process gone."""
    namespace = get_pid_namespace(pid)
    return namespace if namespace != get_pid_namespace(os.getpid()) else None


def signal_namespace_stragglers(leader: int, sig: signal.Signals) -> int:
    """Send ``sig`` to the processes in the PID namespace of ``leader`` (a container's
    init) outside its process group, rescanning like :func:`signal_stragglers`; none
    when ``leader`` is gone or shares our namespace (a process app: its stragglers are
    found by environment). Return how many got it."""
    namespace = get_foreign_namespace(leader)
    if namespace is None:
        return 0
    # Members are told by namespace, not environment: none is ever unsettled.
    return _signal_outside_group(
        lambda _unsettled: find_namespace_members((namespace,)).get(namespace, []), leader, sig
    )


def _signal_outside_group(
    find: Callable[[list[int]], list[int]], pgid: int | None, sig: signal.Signals
) -> int:
    """``sig`` to what ``find`` returns outside group ``pgid``, pass after pass (a
    process may fork between a pass and its signal) until a pass finds nothing new and
    meets no user process without an environment that an earlier pass had not met
    (``find`` adds those to the list it is given: :data:`MAX_ROUNDS`)."""
    seen: set[int] = set()
    met_unsettled: set[int] = set()
    signalled = 0
    for _ in range(MAX_ROUNDS):
        unsettled: list[int] = []
        found = [pid for pid in find(unsettled) if pid not in seen]
        newly_unsettled = set(unsettled) - met_unsettled
        met_unsettled.update(unsettled)
        if not found and not newly_unsettled:
            break
        seen.update(found)  # signalled, gone or the group's: not looked at again
        for pid in found:
            try:
                if pgid is not None and os.getpgid(pid) == pgid:
                    continue
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                continue
            signalled += 1
    return signalled
