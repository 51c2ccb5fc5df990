"""An app's processes that left its process group (``setsid``) share its fate.

A session-38 trial moved an app whose shell started a loop with ``setsid`` to another
node: the loop kept running on the old node beside the new copy's. These tests start
such an app on a real process runtime and check that stop, pause, resume, a save for a
migration and the reaping of an earlier incarnation reach the escaped loop too.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from functools import partial
from pathlib import Path

import psutil
import pytest

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime.app_cgroups import (
    create_copy_cgroup,
    find_cgroup2_mount,
    find_copy_members,
    get_copy_cgroup,
    get_node_cgroup,
    get_unavailable_reason,
    remove_copy_cgroup,
    remove_stale_cgroups,
)
from edgechain.runtime.app_processes import (
    STATE_DIR_ENV,
    find_app_pids,
    find_copies_under,
    find_namespace_members,
    get_foreign_namespace,
    get_pid_namespace,
    get_state_dir_value,
    signal_namespace_stragglers,
    signal_stragglers,
)
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.process_group import is_stopped
from edgechain.types import AppId

from .helpers import get_app, wait_until

LIMIT_S = 10.0
# The app writes "x" to ticks every 20 ms; the loop it starts in a session of its own
# writes "y" to escaped. Both in the state dir (the app's working directory).
ESCAPER = (
    "setsid sh -c 'while :; do echo y >> escaped; sleep 0.02; done' & "
    "while :; do echo x >> ticks; sleep 0.02; done"
)
# The same, but the loop also starts with an empty environment: nothing names its copy
# but its cgroup (``runtime/app_cgroups.py``).
HIDDEN_ESCAPER = "env -i " + ESCAPER
NO_CGROUP = get_unavailable_reason()
ESCAPERS = [
    pytest.param(ESCAPER, id="setsid"),
    pytest.param(
        HIDDEN_ESCAPER,
        id="env-i-setsid",
        marks=pytest.mark.skipif(
            bool(NO_CGROUP), reason=f"apps get no cgroup on this host: {NO_CGROUP}"
        ),
    ),
]


def start_escaper(runtime: ProcessRuntime, script: str = ESCAPER) -> tuple[AppId, list[int]]:
    """Start the app; return it and the pids of its processes outside its group."""
    tag = f"escaper-{secrets.token_hex(4)}"
    spec = AppSpec(name=tag, runtime=RuntimeKind.PROCESS, command=("sh", "-c", script, tag))
    app = get_app(spec)
    runtime.start(app, spec)
    wait_until(lambda: get_size(runtime, app, "escaped") > 0, LIMIT_S)
    return app, get_stragglers(runtime, app)


def get_stragglers(runtime: ProcessRuntime, app: AppId) -> list[int]:
    leader = runtime.get_pid(app)
    copy = get_state_dir_value(str(runtime.get_app_dir(app)))
    found = []
    for pid in find_app_pids(copy):
        try:
            if os.getpgid(pid) != leader:
                found.append(pid)
        except ProcessLookupError:
            continue
    return found


def get_size(runtime: ProcessRuntime, app: AppId, name: str) -> int:
    try:
        return (runtime.get_state_dir(app) / name).stat().st_size
    except FileNotFoundError:
        return 0


def is_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _has_environment(pid: int) -> bool:
    with open(f"/proc/{pid}/environ", "rb") as file:
        return STATE_DIR_ENV.encode() in file.read()


def _is_without_environment(pid: int) -> bool:
    """A live process whose environment lacks the app's (``env -i``); False once it is
    gone: a straggler listed a moment ago may be a command that has exited since (make
    test saw one go between the two reads)."""
    try:
        return not _has_environment(pid)
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_the_environment_names_one_copy_exactly(tmp_path: Path) -> None:
    apps = tmp_path / "apps"
    values = [get_state_dir_value(str(apps / name)) for name in ("aa", "aab")]
    procs = [
        subprocess.Popen(["sleep", "30"], env={**os.environ, STATE_DIR_ENV: value})
        for value in values
    ]
    try:
        # Popen returns once exec began; the kernel sets the new environment a moment
        # later (an empty /proc/<pid>/environ until then): wait for it, not a sleep.
        for proc in procs:
            wait_until(partial(_has_environment, proc.pid), LIMIT_S)
        assert find_app_pids(values[0]) == [procs[0].pid]
        assert find_app_pids(values[1]) == [procs[1].pid]
        assert find_app_pids(values[0] + "x") == []
        copies = find_copies_under(str(apps))
        assert copies == {values[0]: [procs[0].pid], values[1]: [procs[1].pid]}
        assert find_copies_under(str(tmp_path / "other")) == {}
        assert signal_stragglers(values[0], None, signal.SIGKILL) == 1
        assert procs[0].wait(LIMIT_S) == -signal.SIGKILL
        assert procs[1].poll() is None
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def is_writing(runtime: ProcessRuntime, app: AppId) -> bool:
    """The escaped loop runs: its file grows within half a second (it writes every
    20 ms). Told by the file, not by the runtime's own search for the loop."""
    before = get_size(runtime, app, "escaped")
    time.sleep(0.5)
    return get_size(runtime, app, "escaped") > before


@pytest.mark.parametrize("script", ESCAPERS)
def test_stop_ends_the_processes_that_left_the_group(tmp_path: Path, script: str) -> None:
    with ProcessRuntime(tmp_path / "apps", stop_grace_s=1.0) as runtime:
        app, stragglers = start_escaper(runtime, script)
        assert stragglers  # the loop left the group: a group signal misses it
        runtime.stop(app)
        wait_until(lambda: all(is_gone(pid) for pid in stragglers), LIMIT_S)
        wait_until(lambda: get_stragglers(runtime, app) == [], LIMIT_S)
        assert not is_writing(runtime, app)


@pytest.mark.skipif(bool(NO_CGROUP), reason=f"apps get no cgroup on this host: {NO_CGROUP}")
def test_an_app_cannot_leave_its_cgroup_and_the_cgroup_goes_with_it(tmp_path: Path) -> None:
    """The app's processes, the one without an environment included, are members of
    the copy's cgroup; the app user may not move itself out (its try is written to
    the state dir); stopping the app removes the cgroup."""
    mount = find_cgroup2_mount()
    assert mount is not None
    leave = f"if echo $$ > {mount}/cgroup.procs; then echo left; else echo held; fi > try; "
    with ProcessRuntime(tmp_path / "apps", stop_grace_s=1.0) as runtime:
        app, stragglers = start_escaper(runtime, leave + HIDDEN_ESCAPER)
        state_dir = get_state_dir_value(str(runtime.get_app_dir(app)))
        cgroup = get_copy_cgroup(state_dir)
        assert cgroup is not None
        hidden = [pid for pid in stragglers if _is_without_environment(pid)]
        assert hidden  # found by nothing but the cgroup
        assert set(hidden) <= set(find_copy_members(state_dir))
        tried = runtime.get_state_dir(app) / "try"
        wait_until(lambda: tried.exists() and tried.read_text() != "", LIMIT_S)
        assert tried.read_text() == "held\n"
        runtime.stop(app)
        assert not os.path.exists(cgroup)
        assert not is_writing(runtime, app)


@pytest.mark.skipif(bool(NO_CGROUP), reason=f"apps get no cgroup on this host: {NO_CGROUP}")
def test_the_cpu_of_processes_that_left_the_group_counts_as_the_apps(tmp_path: Path) -> None:
    """A daemon the app started spins; its leader sleeps. The app's usage is its
    cgroup's: the spin shows in the CPU share its node reports to the planner (by the
    process group alone it read about 0)."""
    spinner = "env -i setsid sh -c 'while :; do :; done' & while :; do sleep 0.2; done"
    with ProcessRuntime(tmp_path / "apps", stop_grace_s=1.0) as runtime:
        app, stragglers = start_escaper(runtime, spinner + " & " + ESCAPER)
        assert len(stragglers) >= 2

        def sample_cpu_bp() -> int:
            time.sleep(0.5)  # the share is over the time between two samples
            return runtime.stats(app).cpu_bp

        runtime.stats(app)
        # A core of the host's is 10,000 / cores; a tenth of the host is enough to tell
        # a spinning loop from a sleeping one on a loaded machine.
        wait_until(lambda: sample_cpu_bp() >= 1_000, LIMIT_S)
        assert runtime.stats(app).rss_bytes > 0
        runtime.stop(app)


@pytest.mark.parametrize("script", ESCAPERS)
def test_pause_stops_them_and_resume_continues_them(tmp_path: Path, script: str) -> None:
    with ProcessRuntime(tmp_path / "apps", stop_grace_s=1.0) as runtime:
        app, stragglers = start_escaper(runtime, script)
        runtime.pause(app)
        # The loop's own `sleep` children come and go: stopped or gone, none runs.
        wait_until(lambda: all(is_stopped(p) or is_gone(p) for p in stragglers), LIMIT_S)
        assert not is_writing(runtime, app)
        written = get_size(runtime, app, "escaped")
        runtime.resume(app)
        wait_until(lambda: not any(is_stopped(pid) for pid in stragglers), LIMIT_S)
        wait_until(lambda: get_size(runtime, app, "escaped") > written, LIMIT_S)
        runtime.stop(app)


@pytest.mark.parametrize("script", ESCAPERS)
def test_a_save_for_a_migration_leaves_none_at_the_origin(tmp_path: Path, script: str) -> None:
    # The origin's side of a migration: save (no checkpoint hook: a graceful stop),
    # then remove once the destination has it.
    with ProcessRuntime(tmp_path / "apps", stop_grace_s=1.0) as runtime:
        app, stragglers = start_escaper(runtime, script)
        saved = runtime.save(app)
        assert not saved.live
        wait_until(lambda: all(is_gone(pid) for pid in stragglers), LIMIT_S)
        assert not is_writing(runtime, app)
        runtime.remove(app)


@pytest.mark.parametrize("script", ESCAPERS)
def test_a_restarted_runtime_reaps_the_stragglers_of_its_earlier_incarnation(
    tmp_path: Path, script: str
) -> None:
    old = ProcessRuntime(tmp_path / "apps", die_with_node=False)
    app, stragglers = start_escaper(old, script)
    # The old runtime "crashes" (never closed); its app's leader dies with it, as the
    # parent-death signal kills it; the loop in its own session does not die with it.
    leader = old.get_pid(app)
    assert leader is not None
    os.killpg(leader, signal.SIGKILL)
    new = ProcessRuntime(tmp_path / "apps")
    try:
        wait_until(lambda: all(is_gone(pid) for pid in stragglers), LIMIT_S)
        assert not is_writing(new, app)
        assert (new.get_state_dir(app) / "escaped").exists()  # state is kept
    finally:
        new.close()
        old.close()


@pytest.mark.skipif(bool(NO_CGROUP), reason=f"apps get no cgroup on this host: {NO_CGROUP}")
def test_a_restarted_runtime_reaps_a_copy_that_no_pid_file_names(tmp_path: Path) -> None:
    """The node died between an app's spawn and its pid file: nothing on disk names
    the copy, but its cgroup holds it, and the next incarnation kills it."""
    old = ProcessRuntime(tmp_path / "apps", die_with_node=False)
    app, stragglers = start_escaper(old, HIDDEN_ESCAPER)
    leader = old.get_pid(app)
    assert leader is not None
    (old.get_app_dir(app) / "pid").unlink()
    new = ProcessRuntime(tmp_path / "apps")
    try:
        wait_until(lambda: all(is_gone(pid) for pid in [leader, *stragglers]), LIMIT_S)
        assert not is_writing(new, app)
    finally:
        new.close()
        old.close()


def test_a_process_app_has_no_namespace_stragglers(tmp_path: Path) -> None:
    """The search by PID namespace is for containers: a process app shares the node's
    namespace with every process of the host, none of which it may signal."""
    assert get_pid_namespace(os.getpid()) is not None
    assert get_foreign_namespace(os.getpid()) is None
    assert get_foreign_namespace(-1) is None  # no such process
    with ProcessRuntime(tmp_path / "apps", stop_grace_s=1.0) as runtime:
        app, stragglers = start_escaper(runtime)
        leader = runtime.get_pid(app)
        assert leader is not None
        assert signal_namespace_stragglers(leader, signal.SIGSTOP) == 0
        assert not any(is_stopped(pid) for pid in stragglers)
        members = find_namespace_members([get_pid_namespace(os.getpid()) or "-"])
        # Alive after the scan, so alive during it: the loop's 20 ms sleeps come and go
        # (one that ended before the scan failed this on a loaded host).
        alive = [pid for pid in stragglers if psutil.pid_exists(pid)]
        assert alive and set(alive) <= set(next(iter(members.values())))
        runtime.stop(app)


@pytest.mark.skipif(bool(NO_CGROUP), reason=f"apps get no cgroup on this host: {NO_CGROUP}")
def test_empty_app_cgroups_left_behind_are_swept_once_old(tmp_path: Path) -> None:
    """A node killed before it removed its apps' cgroups, or a data dir deleted since,
    leaves empty cgroups: a runtime's start sweeps those old enough to be no spawn in
    progress, never one with a process in it."""
    empty = get_state_dir_value(str(tmp_path / "gone" / "apps" / "aa"))
    busy = get_state_dir_value(str(tmp_path / "live" / "apps" / "bb"))
    procs = [create_copy_cgroup(state_dir) for state_dir in (empty, busy)]
    assert all(procs)
    sleeper = subprocess.Popen(
        ["/bin/sh", "-c", 'echo $$ > "$1" && exec sleep 30', "join", str(procs[1])]
    )
    try:
        wait_until(lambda: find_copy_members(busy) == [sleeper.pid], LIMIT_S)
        remove_stale_cgroups()  # both are younger than a minute: a spawn may be filling one
        assert os.path.isdir(str(get_copy_cgroup(empty)))
        remove_stale_cgroups(min_age_s=0)
        assert not os.path.exists(str(get_node_cgroup(str(tmp_path / "gone" / "apps"))))
        assert find_copy_members(busy) == [sleeper.pid]  # kept, with its node's cgroup
    finally:
        sleeper.kill()
        sleeper.wait()
    remove_copy_cgroup(busy)
    assert not os.path.exists(str(get_node_cgroup(str(tmp_path / "live" / "apps"))))
