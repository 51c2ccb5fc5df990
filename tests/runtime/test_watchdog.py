"""Fencing on real processes and real signals (DESIGN.md, "Exactly once").

Apps run through a real ``ProcessRuntime`` under ``<data_dir>/apps``, the watchdog is
a real process started by ``fencing.Watchdog`` (the lean launch the node uses), and a
``sleep`` process stands in for the node (the watchdog's ``--parent-pid``). Every
check waits for a condition with a generous limit; each test ends every process it
started.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime import watchdog
from edgechain.runtime.app_cgroups import get_unavailable_reason
from edgechain.runtime.base import AppRuntimeError, AppStatus
from edgechain.runtime.fencing import Watchdog, get_frozen_apps, get_watchdog_command
from edgechain.runtime.lease import (
    APPS_DIR,
    LEASE_FILE,
    PID_FILE,
    RUNTIME_PAUSED_FILE,
    WATCHDOG_LOG_FILE,
    WATCHDOG_PID_FILE,
    get_now_ms,
    read_lease,
    write_lease,
    write_pid_entry,
)
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.process_group import is_stopped
from edgechain.types import AppId

from .helpers import get_app, wait_until

POLL_MS = 50
LONG_MS = 60_000
"""A lease that outlives any test."""
LIMIT_S = 10.0
"""Generous limit for every awaited condition (a freeze takes one poll)."""

# Appends a line to state/ticks every 20 ms; on SIGTERM writes state/term first.
LOOP = 'trap "echo term >> term; exit 0" TERM; while :; do echo x >> ticks; sleep 0.02; done'


@dataclass
class FencedNode:
    """A node's data dir with its runtime, a stand-in node process and a watchdog."""

    data_dir: Path
    runtime: ProcessRuntime
    parent: subprocess.Popen[bytes]
    watchdog: Watchdog

    def lease(self, valid_for_ms: int, apps: Iterable[AppId]) -> int:
        """Write a lease valid for ``valid_for_ms`` from now; return its end (ms)."""
        until = get_now_ms() + valid_for_ms
        write_lease(self.data_dir, until, [bytes(a).hex() for a in apps], self.parent.pid)
        return until

    def start_app(self, script: str = LOOP, *, wait_tick: bool = True) -> AppId:
        """Start an app; ``wait_tick``: wait for its first tick (it runs)."""
        tag = f"fence-{secrets.token_hex(4)}"
        spec = AppSpec(name=tag, runtime=RuntimeKind.PROCESS, command=("sh", "-c", script, tag))
        app = get_app(spec)
        self.runtime.start(app, spec)
        if wait_tick:
            wait_until(lambda: count_ticks(self.runtime, app) > 0, LIMIT_S)
        return app

    def start_watchdog(self) -> None:
        self.watchdog.start(self.data_dir, self.parent.pid)

    def read_log(self) -> list[dict[str, object]]:
        text = (self.data_dir / WATCHDOG_LOG_FILE).read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def logged(self, event: str) -> bool:
        return any(entry["event"] == event for entry in self.read_log())


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=LIMIT_S)


def start_sleeper() -> subprocess.Popen[bytes]:
    """A process leading its own group and session (like an app, or the node)."""
    return subprocess.Popen(["sleep", "120"], start_new_session=True)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[FencedNode]:
    """A fenced node whose watchdog is not started yet (a test writes a lease first)."""
    data_dir = tmp_path / "node"
    runtime = ProcessRuntime(data_dir / APPS_DIR, stop_grace_s=2.0)
    parent = start_sleeper()
    watchdog = Watchdog(poll_ms=POLL_MS)
    try:
        yield FencedNode(data_dir, runtime, parent, watchdog)
    finally:
        try:
            watchdog.stop()
            runtime.close()
        finally:
            kill_process(parent)


# --- observing apps ---------------------------------------------------------------------


def get_leader(runtime: ProcessRuntime, app: AppId) -> psutil.Process:
    pid = runtime.get_pid(app)
    assert pid is not None
    return psutil.Process(pid)


def is_frozen(runtime: ProcessRuntime, app: AppId) -> bool:
    """The app's whole group is stopped (SIGSTOP), its leader and every child (a
    child that exited as the group stopped stays a zombie: it does not run either)."""
    leader = get_leader(runtime, app)
    if not is_stopped(leader.pid):
        return False
    children = leader.children(recursive=True)
    return all(is_stopped(c.pid) or _is_ended(c) for c in children)


def _is_ended(process: psutil.Process) -> bool:
    """A zombie, or gone: a leader with its SIGSTOP still pending (``is_stopped``
    counts it) may reap a child between the listing and this look."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def is_running(runtime: ProcessRuntime, app: AppId) -> bool:
    return not is_stopped(get_leader(runtime, app).pid)


def count_ticks(runtime: ProcessRuntime, app: AppId) -> int:
    try:
        return (runtime.get_state_dir(app) / "ticks").stat().st_size
    except FileNotFoundError:
        return 0


def wait_ticking(runtime: ProcessRuntime, apps: Iterable[AppId], ticks: int = 5) -> None:
    """Wait until each app wrote ``ticks`` more ticks (2 bytes each): it runs on."""
    starts = {app: count_ticks(runtime, app) for app in apps}

    def have_ticked() -> bool:
        return all(count_ticks(runtime, a) >= s + 2 * ticks for a, s in starts.items())

    wait_until(have_ticked, LIMIT_S)


def wait_frozen_apps(node: FencedNode, apps: Iterable[AppId]) -> None:
    """Wait until ``watchdog.json`` (written after each pass) lists exactly ``apps``."""
    expected = hexes(apps)
    try:
        wait_until(lambda: get_frozen_apps(node.data_dir) == expected, LIMIT_S)
    except AssertionError:
        frozen = get_frozen_apps(node.data_dir)
        raise AssertionError(f"frozen {frozen}, not {expected}; log {node.read_log()}") from None


def get_statuses(runtime: ProcessRuntime) -> dict[AppId, AppStatus]:
    return {info.app: info.status for info in runtime.list()}


def hexes(apps: Iterable[AppId]) -> set[str]:
    return {bytes(app).hex() for app in apps}


# --- tests ------------------------------------------------------------------------------


def test_a_valid_lease_freezes_nothing(node: FencedNode) -> None:
    apps = [node.start_app() for _ in range(2)]
    node.lease(LONG_MS, apps)
    node.start_watchdog()
    wait_until(lambda: node.logged("start"), LIMIT_S)
    wait_ticking(node.runtime, apps)  # many polls later: still running
    assert node.watchdog.is_alive()
    assert get_frozen_apps(node.data_dir) == set()
    assert set(get_statuses(node.runtime).values()) == {AppStatus.RUNNING}


def test_an_expired_lease_freezes_every_app_group(node: FencedNode) -> None:
    # One app forks a child into its group: the freeze must reach it too.
    apps = [node.start_app(), node.start_app(f"sleep 100 & {LOOP}"), node.start_app()]
    until = node.lease(300, apps)
    node.start_watchdog()
    wait_until(lambda: all(is_frozen(node.runtime, a) for a in apps), LIMIT_S)
    latency_ms = get_now_ms() - until
    print(f"frozen {latency_ms} ms after the lease expired (poll {POLL_MS} ms)")
    wait_frozen_apps(node, apps)
    assert all(s is AppStatus.FROZEN for s in get_statuses(node.runtime).values())
    assert node.runtime.is_running(apps[0])  # frozen is still held here
    assert node.runtime.stats(apps[0]).status is AppStatus.FROZEN
    assert sum(e["event"] == "freeze" for e in node.read_log()) == 3


def test_frozen_groups_are_killed_once_the_lease_says_retire(node: FencedNode) -> None:
    """From ``retire_after_ms`` (the first slot whose plan may take the node for down)
    the watchdog kills what it froze: a node back from a pause finds no stale copy,
    and none ever ran again (SIGKILL ends a stopped process as it stands)."""
    apps = [node.start_app(), node.start_app()]
    until = get_now_ms() - 1
    write_lease(node.data_dir, until, [], node.parent.pid, until + 600)
    node.start_watchdog()
    wait_until(lambda: all(is_frozen(node.runtime, a) for a in apps), LIMIT_S)
    ticks = [count_ticks(node.runtime, a) for a in apps]
    wait_until(lambda: sum(e["event"] == "retire" for e in node.read_log()) == 2, LIMIT_S)
    wait_until(lambda: not any(node.runtime.is_running(a) for a in apps), LIMIT_S)
    assert [count_ticks(node.runtime, a) for a in apps] == ticks  # never ran again
    assert all(node.runtime.get_state_dir(a).exists() for a in apps)  # state kept


def test_renewal_thaws_only_the_listed_apps(node: FencedNode) -> None:
    apps = [node.start_app() for _ in range(3)]
    node.lease(-1, apps)  # already expired
    node.start_watchdog()
    wait_until(lambda: all(is_frozen(node.runtime, a) for a in apps), LIMIT_S)
    node.lease(LONG_MS, apps[:2])
    wait_until(lambda: all(is_running(node.runtime, a) for a in apps[:2]), LIMIT_S)
    wait_ticking(node.runtime, apps[:2])
    assert is_frozen(node.runtime, apps[2])
    wait_frozen_apps(node, apps[2:])
    statuses = get_statuses(node.runtime)
    assert [statuses[a] for a in apps] == [AppStatus.RUNNING, AppStatus.RUNNING, AppStatus.FROZEN]


def test_a_frozen_unlisted_app_is_killed_without_running_again(node: FencedNode) -> None:
    kept, stale = node.start_app(), node.start_app()
    node.lease(-1, [kept, stale])
    node.start_watchdog()
    wait_until(lambda: is_frozen(node.runtime, stale), LIMIT_S)
    node.lease(LONG_MS, [kept])
    wait_until(lambda: is_running(node.runtime, kept), LIMIT_S)
    # Counted now, not at the freeze: a tick written as the SIGSTOP came completes.
    ticks = count_ticks(node.runtime, stale)
    leader = get_leader(node.runtime, stale)
    started = time.monotonic()
    node.runtime.stop(stale)
    stop_s = time.monotonic() - started
    assert not leader.is_running()
    assert stop_s < 1.0  # SIGKILL at once, no SIGTERM grace (2 s here)
    state = node.runtime.get_state_dir(stale)
    assert count_ticks(node.runtime, stale) == ticks  # never ran again
    assert not (state / "term").exists()  # not even its SIGTERM handler
    assert get_statuses(node.runtime)[stale] is AppStatus.STOPPED
    wait_until(lambda: get_frozen_apps(node.data_dir) == set(), LIMIT_S)
    assert node.logged("gone")


# An app whose loop left its group (setsid): the loop writes "y" to state/escaped.
ESCAPER = f"setsid sh -c 'while :; do echo y >> escaped; sleep 0.02; done' & {LOOP}"
NO_CGROUP = get_unavailable_reason()
ESCAPERS = [
    pytest.param(ESCAPER, id="setsid"),
    # The loop also clears its environment: only its cgroup names its copy.
    pytest.param(
        "env -i " + ESCAPER,
        id="env-i-setsid",
        marks=pytest.mark.skipif(
            bool(NO_CGROUP), reason=f"apps get no cgroup on this host: {NO_CGROUP}"
        ),
    ),
]


def count_escaped(runtime: ProcessRuntime, app: AppId) -> int:
    try:
        return (runtime.get_state_dir(app) / "escaped").stat().st_size
    except FileNotFoundError:
        return 0


def is_writing(runtime: ProcessRuntime, app: AppId, count: int) -> bool:
    """``count`` calls of ``count_escaped``, 0.1 s apart, grew (the loop runs)."""
    sizes = []
    for _ in range(count):
        sizes.append(count_escaped(runtime, app))
        time.sleep(0.1)
    return sizes[-1] > sizes[0]


@pytest.mark.parametrize("script", ESCAPERS)
def test_the_fence_reaches_the_processes_that_left_the_group(node: FencedNode, script: str) -> None:
    """Frozen with their app at expiry, thawed with it, killed when it is retired: a
    daemon an app started never runs beside the copy the chain places elsewhere."""
    app = node.start_app(script)
    wait_until(lambda: count_escaped(node.runtime, app) > 0, LIMIT_S)
    node.lease(-1, [app])
    node.start_watchdog()
    wait_until(lambda: is_frozen(node.runtime, app), LIMIT_S)
    wait_until(lambda: not is_writing(node.runtime, app, 4), LIMIT_S)
    assert node.logged("freeze_stragglers")
    node.lease(LONG_MS, [app])
    wait_until(lambda: is_running(node.runtime, app), LIMIT_S)
    assert is_writing(node.runtime, app, 10)
    until = get_now_ms() - 1
    write_lease(node.data_dir, until, [], node.parent.pid, until + 300)
    wait_until(lambda: node.logged("retire"), LIMIT_S)
    wait_until(lambda: not node.runtime.is_running(app), LIMIT_S)
    wait_until(lambda: not is_writing(node.runtime, app, 4), LIMIT_S)
    written = count_escaped(node.runtime, app)
    time.sleep(0.5)
    assert count_escaped(node.runtime, app) == written  # gone, not frozen


@pytest.mark.parametrize("script", ESCAPERS)
def test_the_processes_of_an_app_whose_leader_died_are_frozen_at_expiry(
    node: FencedNode, script: str
) -> None:
    """The node killed: its apps die by their parent-death signal, which a process in a
    new session does not inherit; the watchdog, which outlives the node, stops it."""
    app = node.start_app(script)
    wait_until(lambda: count_escaped(node.runtime, app) > 0, LIMIT_S)
    leader = get_leader(node.runtime, app)
    os.killpg(leader.pid, signal.SIGKILL)
    node.lease(-1, [])
    node.start_watchdog()
    wait_until(lambda: node.logged("freeze_stragglers"), LIMIT_S)
    wait_until(lambda: not is_writing(node.runtime, app, 4), LIMIT_S)


def test_an_app_started_after_expiry_is_frozen(node: FencedNode) -> None:
    node.lease(-1, [])
    node.start_watchdog()
    wait_until(lambda: node.logged("start"), LIMIT_S)
    late = node.start_app(wait_tick=False)  # it may be frozen before its first tick
    wait_until(lambda: is_frozen(node.runtime, late), LIMIT_S)
    wait_frozen_apps(node, [late])


def test_an_app_the_runtime_paused_is_never_thawed(node: FencedNode) -> None:
    paused, marked, frozen = (node.start_app() for _ in range(3))
    node.runtime.pause(paused)  # the runtime's own pause, before the lease expires
    node.lease(-1, [paused, marked, frozen])
    node.start_watchdog()
    wait_frozen_apps(node, [marked, frozen])  # not `paused`: the runtime stopped it
    assert is_frozen(node.runtime, marked)
    assert is_frozen(node.runtime, frozen)
    with pytest.raises(AppRuntimeError, match="fencing"):
        node.runtime.pause(frozen)  # resume() would continue it
    # The runtime pauses `marked` too (a migration racing the freeze): its mark wins.
    (node.runtime.get_app_dir(marked) / RUNTIME_PAUSED_FILE).touch()
    node.lease(LONG_MS, [paused, marked, frozen])
    wait_until(lambda: is_running(node.runtime, frozen), LIMIT_S)
    wait_until(lambda: get_frozen_apps(node.data_dir) == set(), LIMIT_S)
    assert is_frozen(node.runtime, paused)
    assert is_frozen(node.runtime, marked)
    assert get_statuses(node.runtime)[paused] is AppStatus.PAUSED
    node.runtime.resume(paused)
    wait_ticking(node.runtime, [paused])


def test_a_state_snapshot_leaves_a_frozen_app_frozen(node: FencedNode) -> None:
    app = node.start_app()
    node.lease(-1, [app])
    node.start_watchdog()
    wait_frozen_apps(node, [app])
    snapshot = node.runtime.snapshot(app)
    try:
        assert not snapshot.frozen  # archived as it stood, never continued afterwards
        assert is_frozen(node.runtime, app)
        assert not node.logged("refreeze")
    finally:
        snapshot.archive.unlink()


def test_the_watchdog_works_while_the_node_is_stopped(node: FencedNode) -> None:
    apps = [node.start_app() for _ in range(2)]
    node.lease(400, apps)
    node.start_watchdog()
    os.kill(node.parent.pid, signal.SIGSTOP)  # the node is paused: it renews nothing
    wait_until(lambda: all(is_frozen(node.runtime, a) for a in apps), LIMIT_S)
    node.lease(LONG_MS, apps)  # (written here; the paused node would on waking)
    wait_until(lambda: all(is_running(node.runtime, a) for a in apps), LIMIT_S)
    assert node.watchdog.is_alive()


def test_without_its_node_the_watchdog_freezes_at_expiry_then_exits(node: FencedNode) -> None:
    apps = [node.start_app() for _ in range(2)]
    until = node.lease(2000, apps)
    node.start_watchdog()
    kill_process(node.parent)
    wait_until(lambda: node.logged("parent gone"), LIMIT_S)
    if get_now_ms() < until - 300:  # still valid: it keeps watching, apps run on
        assert node.watchdog.is_alive()
        assert all(is_running(node.runtime, a) for a in apps)
    wait_until(lambda: not node.watchdog.is_alive(), LIMIT_S)
    assert get_now_ms() >= until
    assert all(is_frozen(node.runtime, a) for a in apps)
    assert get_frozen_apps(node.data_dir) == hexes(apps)  # written before it exited
    assert node.read_log()[-1]["why"] == "parent gone and lease expired"


def test_a_pid_file_with_another_create_time_is_ignored(node: FencedNode) -> None:
    """Pid reuse: a pid file whose leader's creation time differs names another
    process now, and the watchdog never signals it."""
    stranger, witness = start_sleeper(), start_sleeper()
    try:
        apps_dir = node.data_dir / APPS_DIR
        for name, proc, shift in (("aa" * 32, stranger, 100.0), ("bb" * 32, witness, 0.0)):
            (apps_dir / name).mkdir()
            created = psutil.Process(proc.pid).create_time() - shift
            write_pid_entry(apps_dir / name / PID_FILE, proc.pid, created)
        node.lease(-1, [])
        node.start_watchdog()
        # watchdog.json is written after the pass, which saw both pid files.
        wait_until(lambda: get_frozen_apps(node.data_dir) == {"bb" * 32}, LIMIT_S)
        # The SIGSTOP was sent before that write, but a loaded host may not have run
        # the witness since (seen once in a fresh-clone suite: still "running").
        wait_until(lambda: is_stopped(witness.pid), LIMIT_S)
        assert not is_stopped(stranger.pid)
    finally:
        kill_process(stranger)
        kill_process(witness)


def test_sigterm_ends_the_watchdog_without_thawing(node: FencedNode) -> None:
    app = node.start_app()
    node.lease(-1, [app])
    node.start_watchdog()
    wait_frozen_apps(node, [app])
    node.watchdog.stop()
    assert not node.watchdog.is_alive()
    last = node.read_log()[-1]
    assert (last["event"], last["why"]) == ("exit", "SIGTERM")
    assert is_frozen(node.runtime, app)
    assert get_frozen_apps(node.data_dir) == hexes([app])


def test_a_new_watchdog_ends_the_previous_and_takes_over_its_freezes(node: FencedNode) -> None:
    app = node.start_app()
    node.lease(-1, [app])
    node.start_watchdog()
    wait_until(lambda: is_frozen(node.runtime, app), LIMIT_S)
    first = node.watchdog.pid
    assert first is not None
    second = Watchdog(poll_ms=POLL_MS)  # a new incarnation of the node
    try:
        second.start(node.data_dir, node.parent.pid)
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
        node.lease(LONG_MS, [app])
        wait_until(lambda: is_running(node.runtime, app), LIMIT_S)  # adopted, then thawed
        assert node.logged("adopt")
    finally:
        second.stop()


def test_a_copy_of_the_data_dir_leaves_the_originals_watchdog_running(
    node: FencedNode, tmp_path: Path
) -> None:
    """The copy's pid file names the original's watchdog, pid and start time alike (a
    data directory copied on the same host): its own watchdog must not end that one."""
    node.lease(LONG_MS, [])
    node.start_watchdog()
    first = node.watchdog.pid
    assert first is not None
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy2(node.data_dir / WATCHDOG_PID_FILE, copy / WATCHDOG_PID_FILE)
    other = Watchdog(poll_ms=POLL_MS)
    try:
        other.start(copy, node.parent.pid)
        assert psutil.Process(first).status() != "zombie"
        assert node.watchdog.is_alive()
    finally:
        other.stop()


class _KilledAfterSignal(BaseException):
    """Stands in for a SIGKILL: the watchdog ends right after its first signal."""


def test_a_watchdog_killed_right_after_a_freeze_leaves_it_to_its_successor(
    node: FencedNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A watchdog that dies between a group's SIGSTOP and its next write of
    ``watchdog.json`` (the OOM killer, an operator's kill -9) must leave that group to
    the next watchdog: the freeze is written before the signal. Written after it, the
    successor never knew the group and the app stayed frozen for good on a live node
    the chain places it on."""
    app = node.start_app()
    node.lease(-1, [app])
    fence = watchdog.Fence(str(node.data_dir))
    real_signal_group = watchdog.signal_group

    def signal_then_die(pgid: int, sig: signal.Signals) -> bool:
        real_signal_group(pgid, sig)
        raise _KilledAfterSignal

    monkeypatch.setattr(watchdog, "signal_group", signal_then_die)
    with pytest.raises(_KilledAfterSignal):
        fence.freeze_all(watchdog.read_boot_time())
    monkeypatch.undo()
    wait_until(lambda: is_frozen(node.runtime, app), LIMIT_S)
    # Written ahead as a group to adopt, not reported frozen before its signal.
    assert get_frozen_apps(node.data_dir) == set()
    node.lease(LONG_MS, [app])
    node.start_watchdog()  # the node starts a new one, and the lease is valid again
    wait_until(lambda: is_running(node.runtime, app), LIMIT_S)
    wait_ticking(node.runtime, [app])
    assert node.logged("adopt") and node.logged("thaw")


def test_the_watchdog_stays_small(node: FencedNode) -> None:
    """One watchdog per node, 50 nodes per host: no site-packages module is loaded (no
    psutil, crypto, ...) and its resident set stays near the interpreter's own."""
    node.lease(LONG_MS, [])
    node.start_watchdog()
    wait_until(lambda: node.logged("start"), LIMIT_S)
    pid = node.watchdog.pid
    assert pid is not None
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "site-packages" not in maps
    rss_mb = psutil.Process(pid).memory_info().rss / 2**20
    print(f"watchdog RSS {rss_mb:.1f} MiB")
    assert rss_mb < 18


def test_a_node_ahead_of_the_host_has_its_apps_fenced_by_its_own_clock(node: FencedNode) -> None:
    """``--clock-offset-ms``: the node writes the lease in its shifted clock and starts
    the watchdog with the same offset, so the watchdog agrees with the node, not with
    the host: a lease 1 min ahead of the host's clock has expired for a node 2 min
    ahead, and one written in the node's clock keeps its apps running."""
    ahead_ms = 2 * LONG_MS
    node.watchdog.clock_offset_ms = ahead_ms  # as Node passes its own on
    apps = [node.start_app(), node.start_app()]
    node.lease(LONG_MS, apps)  # valid by the host's clock only
    node.start_watchdog()
    wait_until(lambda: all(is_frozen(node.runtime, a) for a in apps), LIMIT_S)
    wait_frozen_apps(node, apps)
    until = get_now_ms(ahead_ms) + LONG_MS  # as the node writes it
    write_lease(node.data_dir, until, [bytes(a).hex() for a in apps], node.parent.pid)
    wait_until(lambda: all(is_running(node.runtime, a) for a in apps), LIMIT_S)
    start = next(e for e in node.read_log() if e["event"] == "start")
    assert start["clock_offset_ms"] == ahead_ms
    assert isinstance(start["ms"], int) and start["ms"] >= get_now_ms() + LONG_MS


def test_a_node_behind_the_host_keeps_a_lease_the_host_would_call_expired(
    node: FencedNode,
) -> None:
    node.watchdog.clock_offset_ms = -LONG_MS
    apps = [node.start_app()]
    node.lease(-1, apps)  # expired by the host's clock, 1 min ahead of the node's
    node.start_watchdog()
    wait_until(lambda: node.logged("start"), LIMIT_S)
    wait_ticking(node.runtime, apps)  # many polls later: still running
    assert get_frozen_apps(node.data_dir) == set()
    assert not node.logged("freeze")


def test_the_lease_reader_parses_the_file_again_only_when_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One stat per poll instead of a JSON parse (100 watchdogs polling 10 times a
    # second spent 40 % of a core parsing); every write the node makes is seen.
    parsed: list[str] = []
    real_read = read_lease

    def counting_read(path: str) -> object:
        parsed.append(path)
        return real_read(path)

    monkeypatch.setattr(watchdog, "read_lease", counting_read)
    reader = watchdog.LeaseReader(str(tmp_path / LEASE_FILE))
    assert reader.read() is None and parsed == []  # missing: expired, nothing parsed
    write_lease(tmp_path, 1_000, ["aa"], 1)
    first = reader.read()
    assert first is not None and first.valid_until_ms == 1_000
    for _ in range(5):
        assert reader.read() == first
    assert len(parsed) == 1
    write_lease(tmp_path, 2_000, ["aa"], 1)  # a renewal: same size, a new file
    renewed = reader.read()
    assert renewed is not None and renewed.valid_until_ms == 2_000 and len(parsed) == 2
    (tmp_path / LEASE_FILE).unlink()
    assert reader.read() is None
    write_lease(tmp_path, 2_000, ["aa"], 1)
    assert reader.read() == renewed and len(parsed) == 3


def test_a_watchdog_that_ended_is_started_again_and_fences(node: FencedNode) -> None:
    """Killed (a stray ``pkill``, the OOM killer), the watchdog is started again by the
    node's next check, and the new one freezes the apps of an expired lease."""
    app = node.start_app()
    node.lease(LONG_MS, [app])
    assert node.watchdog.restart_if_ended() is None  # never started: nothing to restart
    node.start_watchdog()
    first = node.watchdog.pid
    assert first is not None
    assert node.watchdog.restart_if_ended() is None  # running: left alone
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: not node.watchdog.is_alive(), LIMIT_S)
    assert node.watchdog.restart_if_ended() == -signal.SIGKILL
    second = node.watchdog.pid
    assert second is not None and second != first
    assert node.watchdog.restarts == 1
    assert node.watchdog.is_alive()
    node.lease(-1, [app])  # the node loses the chain: the new watchdog fences
    wait_until(lambda: is_frozen(node.runtime, app), LIMIT_S)
    node.watchdog.stop()
    assert node.watchdog.restart_if_ended() is None  # stopped on purpose: stays stopped
    assert not psutil.pid_exists(second) or psutil.Process(second).status() == "zombie"


def test_a_full_disk_does_not_end_the_watchdog(node: FencedNode) -> None:
    """Its log (``/dev/full``: every write fails with ENOSPC) and its pid file (a
    directory in the way) cannot be written: the watchdog still freezes the apps of an
    expired lease and thaws them when a lease lists them again. Before, the first line
    it could not write ended it, and the watchdog its node started next never thawed a
    group it had not frozen itself."""
    apps = [node.start_app(), node.start_app()]
    node.lease(-1, apps)  # a full disk stops the node renewing its lease, too
    (node.data_dir / WATCHDOG_PID_FILE).mkdir()
    command = get_watchdog_command(node.data_dir, POLL_MS, node.parent.pid)
    with open("/dev/full", "wb") as full:
        proc = subprocess.Popen(command, stdout=full, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: all(is_frozen(node.runtime, a) for a in apps), LIMIT_S)
        assert proc.poll() is None, "the watchdog ended"
        node.lease(LONG_MS, apps)
        wait_until(lambda: all(is_running(node.runtime, a) for a in apps), LIMIT_S)
        wait_ticking(node.runtime, apps)
        assert proc.poll() is None, "the watchdog ended"
    finally:
        proc.terminate()
        proc.wait(timeout=LIMIT_S)


def test_a_pending_sigstop_is_read_from_either_pending_set() -> None:
    """``is_stopped`` takes a process with SIGSTOP pending for stopped: it stops before
    it runs again (a shell waiting for the child it vforked, frozen with its group)."""
    stop = 1 << (signal.SIGSTOP - 1)
    head = b"Name:\tsh\nState:\tS (sleeping)\n"

    def status(sig_pnd: int, shd_pnd: int) -> bytes:
        return head + b"SigPnd:\t%016x\nShdPnd:\t%016x\nSigBlk:\t0\n" % (sig_pnd, shd_pnd)

    assert not watchdog.is_stop_pending_in(status(0, 0))
    assert watchdog.is_stop_pending_in(status(stop, 0))
    assert watchdog.is_stop_pending_in(status(0, stop | 1))
    assert not watchdog.is_stop_pending_in(status(1 << (signal.SIGTERM - 1), 0))
    assert not watchdog.is_stop_pending_in(head)  # no pending sets: nothing pending
    assert not watchdog.is_stop_pending_in(head + b"SigPnd:\tzz\n")  # unreadable
    # And the process table agrees: a live process has none pending.
    with open(f"/proc/{os.getpid()}/status", "rb") as file:
        assert not watchdog.is_stop_pending_in(file.read())
