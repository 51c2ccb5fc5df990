"""A cgroup per process app copy: the set of processes an app cannot leave.

``runtime/app_processes.py`` finds a copy's processes by their environment, and says
why: a process the app starts with ``setsid`` leaves its process group. A process that
also replaces its environment (``env -i setsid cmd &``, or any daemon that clears it)
was found by nothing: it ran on after its app was stopped, moved or fenced, beside the
copy the chain placed elsewhere, which is an app running twice.

A cgroup holds a process and everything it forks, whatever their session, group or
environment, and only root may move a process out of it (a move needs write access to
the ``cgroup.procs`` of both cgroups' common ancestor). So a root node starts every
process app inside a cgroup of the copy's own, in the cgroup v2 hierarchy
(``<mount>/edgechain/<node>/<app hex>``, ``<node>`` a hash of the node's apps
directory, so the watchdog and a restarted node find it from the same path):

* the app's first process joins the cgroup before it drops root and execs the app
  (``runtime/spawner.py``), so no fork of the app's precedes it;
* every signal to the copy's stragglers also goes to the cgroup's members, and a
  SIGKILL to the copy writes ``cgroup.kill`` (Linux 5.14): the kernel kills every
  member at once, a forking one included;
* the copy's CPU use is the cgroup's (``cpu.stat``), so a daemon an app started
  counts in the usage its node reports, as a container's does;
* the cgroup is removed when the copy ends.

Only a root node can do this, and only where a cgroup v2 hierarchy is mounted writable
and a process can join a cgroup in it (the unified one of a hybrid host counts:
membership needs no controller). Elsewhere
apps start as before, found by environment only (:func:`get_unavailable_reason` says
why). Stdlib only: the watchdog (``runtime/watchdog.py``) imports it.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import os
import time

BASE_NAME = "edgechain"
"""The cgroup under the hierarchy's root that holds every node's app cgroups."""
PROCS_FILE = "cgroup.procs"
KILL_FILE = "cgroup.kill"
CPU_STAT_FILE = "cpu.stat"
MOUNTS_FILE = "/proc/self/mounts"


def find_cgroup2_mount(mounts_file: str = MOUNTS_FILE) -> str | None:
    """The mount point of the first cgroup v2 hierarchy in ``mounts_file`` (``/sys/fs/
    cgroup`` on a v2 host, ``/sys/fs/cgroup/unified`` on a hybrid one), or None."""
    try:
        with open(mounts_file, encoding="utf-8", errors="replace") as file:
            for line in file:
                fields = line.split()
                if len(fields) >= 3 and fields[2] == "cgroup2":
                    # Spaces and the like are octal escapes in the mount table.
                    return fields[1].encode().decode("unicode_escape")
    except OSError:
        return None
    return None


@functools.cache
def _find_root() -> tuple[str | None, str]:
    """(the usable hierarchy's mount point or None, why none): once per process."""
    if os.geteuid() != 0:
        return None, "the node is not root"
    mount = find_cgroup2_mount()
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted"
    base = os.path.join(mount, BASE_NAME)
    try:
        os.makedirs(base, exist_ok=True)
    except OSError as exc:
        return None, f"cannot create {base}: {exc.strerror}"
    return mount, ""


def get_root() -> str | None:
    """The cgroup v2 mount point app cgroups go under, None where apps cannot have
    one (:func:`get_unavailable_reason`). Looked up once per process."""
    return _find_root()[0]


def get_unavailable_reason() -> str:
    """Why apps get no cgroup here ("" when they do): no usable hierarchy, or a process
    could not join a cgroup in it (:func:`_probe_join`)."""
    return _probe_join()


@functools.cache
def _probe_join() -> str:
    """ "" when a process can join a cgroup here, else why not: once per process, by a
    shell that joins a probe cgroup as an app's first process does (``spawner.py``).
    A hierarchy may be writable and still refuse the move (a delegation rule, a
    controller's constraint); apps would then fail at every start, so they start
    without a cgroup instead, and ``/status`` says why."""
    root, reason = _find_root()
    if root is None:
        return reason
    probe = os.path.join(root, BASE_NAME, f"probe-{os.getpid()}")
    join = 'echo $$ > "$1"'
    try:
        os.makedirs(probe, exist_ok=True)
        procs = os.path.join(probe, PROCS_FILE)
        pid = os.posix_spawn("/bin/sh", ["/bin/sh", "-c", join, "edgechain-probe", procs], {})
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    except OSError as exc:
        return f"cannot join a cgroup under {root}: {exc.strerror}"
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(probe)
    return "" if code == 0 else f"a process cannot join a cgroup under {root}"


@functools.lru_cache(maxsize=64)
def get_node_cgroup(apps_dir: str) -> str | None:
    """The cgroup holding the app cgroups of the node whose apps live in ``apps_dir``
    (kept: the sampler asks twice per app each second, and the root is fixed)."""
    root = get_root()
    if root is None:
        return None
    digest = hashlib.sha256(os.path.abspath(apps_dir).encode()).hexdigest()[:16]
    return os.path.join(root, BASE_NAME, digest)


def get_copy_cgroup(state_dir: str) -> str | None:
    """The cgroup of the app copy whose state directory is ``state_dir``
    (``app_processes.get_state_dir_value``: ``<apps dir>/<app hex>/state``)."""
    app_dir = os.path.dirname(state_dir)
    node = get_node_cgroup(os.path.dirname(app_dir))
    return None if node is None else os.path.join(node, os.path.basename(app_dir))


def create_copy_cgroup(state_dir: str) -> str | None:
    """Create the copy's cgroup if need be; return its ``cgroup.procs`` path, which
    a process joins by writing its pid there. None where apps get no cgroup."""
    cgroup = get_copy_cgroup(state_dir)
    if cgroup is None or _probe_join():
        return None
    try:
        os.makedirs(cgroup, exist_ok=True)
    except FileNotFoundError:  # the node's emptied cgroup was removed meanwhile
        os.makedirs(cgroup, exist_ok=True)
    # Young again: the sweep of stale cgroups leaves it alone while the app joins it.
    with contextlib.suppress(OSError):
        os.utime(cgroup)
    return os.path.join(cgroup, PROCS_FILE)


def read_members(cgroup: str) -> list[int]:
    """The pids in ``cgroup`` (none when it does not exist)."""
    try:
        with open(os.path.join(cgroup, PROCS_FILE), "rb") as file:
            return [int(line) for line in file.read().split()]
    except (OSError, ValueError):
        return []


def find_copy_members(state_dir: str) -> list[int]:
    """The pids in the copy's cgroup."""
    cgroup = get_copy_cgroup(state_dir)
    return [] if cgroup is None else read_members(cgroup)


def find_node_members(apps_dir: str) -> dict[str, list[int]]:
    """The pids in each app cgroup of the node, by the app's directory (``<apps_dir>/
    <app hex>``; its state directory is ``app_processes.get_state_dir_value`` of it)."""
    node = get_node_cgroup(apps_dir)
    found: dict[str, list[int]] = {}
    if node is None:
        return found
    try:
        names = os.listdir(node)
    except OSError:
        return found
    apps = os.path.abspath(apps_dir)
    for name in names:
        path = os.path.join(node, name)
        if os.path.isdir(path):
            members = read_members(path)
            if members:
                found[os.path.join(apps, name)] = members
    return found


def read_cpu_seconds(state_dir: str) -> float | None:
    """The CPU time every process of the copy's cgroup used since the cgroup was made,
    those that ended included (``cpu.stat``'s ``usage_usec``, kept without any
    controller); None where the copy has no cgroup."""
    cgroup = get_copy_cgroup(state_dir)
    if cgroup is None:
        return None
    try:
        with open(os.path.join(cgroup, CPU_STAT_FILE), "rb") as file:
            for line in file:
                key, _, value = line.partition(b" ")
                if key == b"usage_usec":
                    return int(value) / 1e6
    except (OSError, ValueError):
        return None
    return None


def kill_copy(state_dir: str) -> bool:
    """SIGKILL every process in the copy's cgroup at once (``cgroup.kill``); False
    where there is no such cgroup or no ``cgroup.kill`` (Linux before 5.14)."""
    cgroup = get_copy_cgroup(state_dir)
    if cgroup is None:
        return False
    try:
        with open(os.path.join(cgroup, KILL_FILE), "w") as file:
            file.write("1")
    except OSError:
        return False
    return True


REMOVE_WAIT_S = 1.0
"""How long :func:`remove_copy_cgroup` waits for killed members to exit."""


def remove_copy_cgroup(state_dir: str, wait_s: float = REMOVE_WAIT_S) -> None:
    """Remove the copy's cgroup once it holds no process, waiting up to ``wait_s`` for
    members just killed to exit (the kernel kills asynchronously); a member that
    lives on keeps it (removed at the runtime's next start or close). Then the node's
    cgroup, once that is empty."""
    cgroup = get_copy_cgroup(state_dir)
    if cgroup is None:
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.rmdir(cgroup)
            break
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                break
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                return
            time.sleep(0.01)
    with contextlib.suppress(OSError):  # other apps' cgroups keep it
        os.rmdir(os.path.dirname(cgroup))


def remove_empty_cgroups(apps_dir: str) -> None:
    """Remove the node's app cgroups that hold no process (left by a node killed
    before it removed them), and the node's cgroup once it is empty."""
    node = get_node_cgroup(apps_dir)
    if node is not None:
        _remove_empty_under(node, min_age_s=0.0)


STALE_AFTER_S = 60.0
"""An empty app cgroup this old is no spawn in progress (a spawn fills its cgroup within
milliseconds of creating it)."""


def remove_stale_cgroups(min_age_s: float = STALE_AFTER_S) -> int:
    """Remove every node's empty app cgroups older than ``min_age_s``, and the node
    cgroups left empty: those of nodes killed before they removed them, and of data
    directories gone since (a test's). Return how many app cgroups went."""
    root = get_root()
    if root is None:
        return 0
    base = os.path.join(root, BASE_NAME)
    try:
        nodes = os.listdir(base)
    except OSError:
        return 0
    removed = 0
    for node in nodes:
        path = os.path.join(base, node)
        if os.path.isdir(path):
            removed += _remove_empty_under(path, min_age_s)
    return removed


def _remove_empty_under(node: str, min_age_s: float) -> int:
    """Remove the app cgroups under ``node`` that hold no process and are at least
    ``min_age_s`` old, then ``node`` itself if that left it empty; how many went."""
    removed = 0
    now = time.time()
    with contextlib.suppress(OSError):
        for name in os.listdir(node):
            path = os.path.join(node, name)
            if not os.path.isdir(path) or read_members(path):
                continue
            if now - os.stat(path).st_mtime >= min_age_s:
                with contextlib.suppress(OSError):
                    os.rmdir(path)
                    removed += 1
        os.rmdir(node)  # fails while any app cgroup is left: kept
    return removed
