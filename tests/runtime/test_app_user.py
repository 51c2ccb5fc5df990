"""Process-runtime apps never run as root: a root node runs them as its app user.

Checked on the process table (psutil, ``/proc/PID/status``), not on the runtime's word.
The tests that need a root node skip otherwise: as a normal user the apps already run
unprivileged, as that user, and there is nothing to drop.
"""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import secrets
from pathlib import Path

import psutil
import pytest

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.crypto import bls
from edgechain.errors import LocalError
from edgechain.runtime.appuser import AppUser, AppUserError, find_unreachable, resolve_app_user
from edgechain.runtime.base import AppStatus
from edgechain.runtime.manager import AppManager
from edgechain.runtime.process import ProcessRuntime

from .helpers import (
    assert_single_instance,
    get_app,
    get_counter,
    get_node_id,
    get_tagged_processes,
    read_count,
    wait_count_above,
    wait_until,
)

IS_ROOT = os.geteuid() == 0
KEY = bls.keygen(b"app-user-test-key-seed-32-bytes!")
needs_root = pytest.mark.skipif(
    not IS_ROOT,
    reason="needs a root node: only root drops privileges (as a normal user the apps "
    "run as that user, nothing to check)",
)


def _session(leader: int) -> list[psutil.Process]:
    """Every live process of the app's session (the leader and its children)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == leader and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _supplementary_groups(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return [int(g) for g in line.split()[1:]]
    raise AssertionError("no Groups line")


def _assert_runs_as(runtime: ProcessRuntime, spec: AppSpec, user: AppUser) -> None:
    pid = runtime.get_pid(get_app(spec))
    assert pid is not None
    members = _session(pid)
    assert members, "the app is not running"
    for proc in members:
        try:
            assert tuple(proc.uids()) == (user.uid,) * 3, proc
            assert tuple(proc.gids()) == (user.gid,) * 3, proc
            assert _supplementary_groups(proc.pid) == []
        except (psutil.NoSuchProcess, OSError):
            continue  # a short-lived child (the counter's mv) ended meanwhile


def _nobody() -> AppUser:
    entry = pwd.getpwnam("nobody")
    return AppUser("nobody", entry.pw_uid, entry.pw_gid)


def _owners(tree: Path) -> set[tuple[int, int]]:
    owners = {(tree.stat().st_uid, tree.stat().st_gid)}
    for path in tree.rglob("*"):
        st = path.lstat()
        owners.add((st.st_uid, st.st_gid))
    return owners


# --- configuration ---------------------------------------------------------------------


def test_resolve_app_user() -> None:
    nobody = _nobody()
    assert resolve_app_user("nobody") == nobody
    assert resolve_app_user(str(nobody.uid)) == nobody
    group = grp.getgrgid(nobody.gid).gr_name
    assert resolve_app_user(f"nobody:{group}") == nobody
    with pytest.raises(AppUserError, match="does not exist"):
        resolve_app_user("no-such-user-edgechain")
    with pytest.raises(AppUserError, match="does not exist"):
        resolve_app_user("nobody:no-such-group-edgechain")
    with pytest.raises(AppUserError, match="root"):
        resolve_app_user("root")
    with pytest.raises(AppUserError, match="root"):
        resolve_app_user("nobody:0")


@needs_root
def test_a_bad_app_user_is_a_local_error_at_start_up(tmp_path: Path) -> None:
    for bad in ("no-such-user-edgechain", "root", None):
        with pytest.raises(LocalError):
            ProcessRuntime(tmp_path / "rt", app_user=bad)
    # The node's app manager passes it through, and fails the same way.
    with pytest.raises(AppUserError, match="does not exist"):
        AppManager(tmp_path / "node", get_node_id("n"), KEY, app_user="no-such-user-edgechain")
    manager = AppManager(tmp_path / "node", get_node_id("n"), KEY, app_user="nobody")
    assert manager.runtime.app_user == _nobody()
    asyncio.run(manager.close())


def test_find_unreachable(tmp_path: Path) -> None:
    nobody = _nobody()
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o700)
    assert find_unreachable(tmp_path, nobody) is None
    assert find_unreachable(locked / "inner", nobody) == locked


# --- the app's identity -----------------------------------------------------------------


@needs_root
def test_apps_run_as_the_app_user_and_write_their_state(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    runtime, _ = process_pair
    nobody = _nobody()
    assert runtime.app_user == nobody
    spec, _ = get_counter()
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    wait_count_above(state, 3)  # it writes its state, as that user
    _assert_runs_as(runtime, spec, nobody)
    assert _owners(state) == {(nobody.uid, nobody.gid)}
    app_dir = runtime.get_app_dir(app)
    # The runtime's own files stay root's; the app can pass through its directory only.
    assert (app_dir.stat().st_uid, app_dir.stat().st_mode & 0o777) == (0, 0o711)
    assert (app_dir / "pid").stat().st_uid == 0
    assert (app_dir / "spec").stat().st_uid == 0
    assert (app_dir / "app.log").stat().st_mode & 0o777 == 0o600
    assert (runtime.root.stat().st_mode & 0o777) == 0o711


@needs_root
def test_an_app_cannot_write_the_runtime_files(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    runtime, _ = process_pair
    script = (
        'cd "$EDGECHAIN_STATE_DIR"; id -u > uid.tmp; echo "$HOME" > home; '
        "if (echo x > ../pid || echo x > ../evil) 2>/dev/null; then echo yes; else echo no; fi"
        " > escaped; mv uid.tmp uid; while :; do sleep 1; done"
    )
    tag = f"w-{secrets.token_hex(4)}"
    spec = AppSpec("writer", RuntimeKind.PROCESS, command=("/bin/sh", "-c", script, tag))
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    wait_until((state / "uid").exists)
    assert (state / "uid").read_text().strip() == str(_nobody().uid)
    assert (state / "escaped").read_text().strip() == "no"
    assert (state / "home").read_text().strip() == str(state)
    assert not (runtime.get_app_dir(app) / "evil").exists()
    runtime.stop(app)
    wait_until(lambda: get_tagged_processes(tag) == [])


@needs_root
def test_save_restore_round_trip_as_the_app_user(
    process_pair: tuple[ProcessRuntime, ProcessRuntime],
) -> None:
    a, b = process_pair
    nobody = _nobody()
    spec, tag = get_counter(pad=20_000)
    app = get_app(spec)
    a.start(app, spec, version=4)
    state_a = a.get_state_dir(app)
    wait_until(lambda: (state_a / ".checkpoint-hook").exists() and (state_a / "pad").exists())
    wait_count_above(state_a, 3)
    saved = a.save(app)
    # The checkpoint hook answered: the app could write its ack as the app user.
    assert saved.live
    saved_count = read_count(state_a)
    b.restore(app, spec, saved.archive)
    a.remove(app)
    state_b = b.get_state_dir(app)
    # Root unpacked it; the app user owns all of it and keeps counting from it.
    assert wait_count_above(state_b, saved_count) > saved_count
    assert _owners(state_b) == {(nobody.uid, nobody.gid)}
    _assert_runs_as(b, spec, nobody)
    # The origin's copy got SIGKILL in ``remove``; a child it had just forked can still
    # be in the process table, dying, on a loaded host (CI, 2 cores, live testnets
    # beside it): waited for, then held at one.
    assert_single_instance(tag)
    # The version is not part of a migration; the node confirms it against the chain.
    assert b.get_release(app) == (spec, None)
    b.set_version(app, 4)
    assert b.get_release(app) == (spec, 4)
    # And back again: the destination's copy migrates like the origin's did.
    again = b.save(app)
    assert again.live
    a.restore(app, spec, again.archive)
    b.remove(app)
    assert wait_count_above(a.get_state_dir(app), read_count(state_b)) > saved_count


@needs_root
def test_state_left_by_root_is_handed_over_without_following_links(tmp_path: Path) -> None:
    """State an older node version wrote as root becomes the app user's; a symlink or
    hard link in it never hands over a file outside the state dir."""
    nobody = _nobody()
    outside = tmp_path / "outside"
    outside.write_text("root's\n")
    outside.chmod(0o600)
    spec, _ = get_counter()
    app = get_app(spec)
    with ProcessRuntime(tmp_path / "rt") as runtime:
        state = runtime.get_state_dir(app)
        (state / "sub").mkdir(parents=True)
        (state / "count").write_text("41\n")
        (state / "sub" / "data").write_text("x\n")
        (state / "link").symlink_to(outside)
        os.link(outside, state / "hard")
        runtime.start(app, spec)
        assert wait_count_above(state, 41) > 41
        for path in (state, state / "sub", state / "sub" / "data", state / "count"):
            assert (path.stat().st_uid, path.stat().st_gid) == (nobody.uid, nobody.gid), path
        assert (state / "link").lstat().st_uid == nobody.uid
        assert (outside.stat().st_uid, outside.stat().st_gid) == (0, 0)
        assert outside.read_text() == "root's\n"


@needs_root
def test_an_unreachable_root_starts_nothing(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    spec, tag = get_counter()
    with ProcessRuntime(locked / "rt") as runtime:
        assert str(locked) in runtime.unusable_reason
        with pytest.raises(AppUserError, match="cannot reach"):
            runtime.start(get_app(spec), spec)
        assert get_tagged_processes(tag) == []


@pytest.mark.skipif(IS_ROOT, reason="as root the apps drop to the app user (tests above)")
def test_without_root_apps_run_as_the_node_user(tmp_path: Path) -> None:
    spec, _ = get_counter()
    app = get_app(spec)
    with ProcessRuntime(tmp_path / "rt", app_user="no-such-user-edgechain") as runtime:
        assert runtime.app_user is None
        runtime.start(app, spec)
        wait_count_above(runtime.get_state_dir(app), 1)
        pid = runtime.get_pid(app)
        assert pid is not None
        assert psutil.Process(pid).uids().real == os.getuid()


# --- what the runtime remembers ----------------------------------------------------------


def test_the_started_release_survives_a_restart(tmp_path: Path) -> None:
    spec, _ = get_counter()
    app = get_app(spec)
    with ProcessRuntime(tmp_path / "rt") as old:
        old.start(app, spec, version=3)
        stopped_at = wait_count_above(old.get_state_dir(app), 2)
    with ProcessRuntime(tmp_path / "rt") as new:
        assert [(i.app, i.name, i.status) for i in new.list()] == [
            (app, "counter", AppStatus.STOPPED)
        ]
        assert new.get_release(app) == (spec, 3)
        assert not new.is_running(app)
        new.start(app, spec, version=4)
        assert wait_count_above(new.get_state_dir(app), stopped_at) > stopped_at
        assert new.get_release(app) == (spec, 4)
        new.remove(app)
    with ProcessRuntime(tmp_path / "rt") as after_remove:
        assert after_remove.list() == ()


def _count_user_tasks(uid: int) -> int:
    """The user's processes and threads, as ``RLIMIT_NPROC`` counts them."""
    count = 0
    for proc in psutil.process_iter():
        try:
            if proc.uids().real == uid:
                count += proc.num_threads()
        except psutil.Error:
            continue
    return count


def _is_sleep_300(proc: psutil.Process, uid: int) -> bool:
    try:
        return proc.uids().real == uid and proc.cmdline() == ["sleep", "300"]
    except psutil.Error:
        return False


BOMB_USER = "daemon"
"""The fork bomb's app user: one no other test runs apps as. ``RLIMIT_NPROC`` counts all
of a user's tasks, and ``make test`` runs two workers at once, so the other worker's
apps as ``nobody`` used up the headroom the test measured (CI-like run: "Cannot fork"
at the first fork)."""


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@needs_root
@pytest.mark.skipif(not _has_user(BOMB_USER), reason=f"needs the system user {BOMB_USER}")
def test_a_fork_bomb_is_held_to_the_app_users_process_limit(tmp_path: Path) -> None:
    """A process app has no pids cgroup: a root node limits its app user's processes
    (``RLIMIT_NPROC``, ``spawner.APP_USER_MAX_PROCESSES``). An app forking without
    end is refused forks at the limit (a small one here), and stopping it ends all."""
    user = resolve_app_user(BOMB_USER)
    limit = _count_user_tasks(user.uid) + 20
    runtime = ProcessRuntime(tmp_path / "rt", app_user=BOMB_USER, max_app_processes=limit)
    tag = f"bomb-{secrets.token_hex(4)}"
    script = "i=0; while [ $i -lt 200 ]; do sleep 300 & i=$((i+1)); done; wait"
    spec = AppSpec(name=tag, runtime=RuntimeKind.PROCESS, command=("sh", "-c", script, tag))
    app = get_app(spec)
    log = runtime.get_app_dir(app) / "app.log"
    try:
        runtime.start(app, spec)
        wait_until(lambda: log.exists() and "fork" in log.read_text().lower(), 20)
        assert _count_user_tasks(user.uid) <= limit
        sleeps = [p for p in psutil.process_iter() if _is_sleep_300(p, user.uid)]
        assert 0 < len(sleeps) < 200, log.read_text()[-500:]
    finally:
        runtime.stop(app)
        runtime.close()
    wait_until(lambda: not [p for p in psutil.process_iter() if _is_sleep_300(p, user.uid)], 20)
