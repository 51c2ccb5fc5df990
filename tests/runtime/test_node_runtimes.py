"""A node's runtimes together (``runtime/runtimes.py``): each app runs with the runtime
its spec names, against a real private Podman service (the session fixture in
conftest.py), and the fencing watchdog freezes a container app like a process app.

Every wait is on a condition with a generous limit; each test closes what it started.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psutil
import pytest

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime.base import AppStatus
from edgechain.runtime.container import ContainerRuntime
from edgechain.runtime.fencing import Watchdog
from edgechain.runtime.lease import APPS_DIR, PID_FILE, get_now_ms, write_lease
from edgechain.runtime.podman import PodmanService
from edgechain.runtime.process import ProcessRuntime
from edgechain.runtime.runtimes import NoContainerEngineError, NodeRuntimes
from edgechain.runtime.samples import SAMPLE_IMAGE, get_counter_spec
from edgechain.types import AppId

from .helpers import get_app, read_count, wait_count_above, wait_until

LIMIT_S = 30.0


@pytest.fixture
def runtimes(
    podman_services: tuple[PodmanService, PodmanService], tmp_path: Path
) -> Iterator[NodeRuntimes]:
    root = tmp_path / "node" / APPS_DIR
    process = ProcessRuntime(root, stop_grace_s=1.0)
    container = ContainerRuntime(
        root,
        client=podman_services[0].get_client(),
        node_tag=f"n{secrets.token_hex(3)}",
        network_mode="none",
        stop_grace_s=1,
    )
    both = NodeRuntimes(process, container)
    try:
        yield both
    finally:
        both.close()


def _counters(tag: str) -> tuple[AppId, AppId]:
    return (
        get_app(get_counter_spec(RuntimeKind.PROCESS, tag=f"p-{tag}")),
        get_app(get_counter_spec(RuntimeKind.CONTAINER, tag=f"c-{tag}")),
    )


def test_a_process_only_node_refuses_container_apps(tmp_path: Path) -> None:
    runtimes = NodeRuntimes(ProcessRuntime(tmp_path / "apps", stop_grace_s=1.0))
    try:
        spec = get_counter_spec(RuntimeKind.CONTAINER, tag="nowhere")
        assert runtimes.kinds == {RuntimeKind.PROCESS}
        with pytest.raises(NoContainerEngineError, match="no container engine configured"):
            runtimes.start(get_app(spec), spec)
        # Never the container's command on the host either.
        with pytest.raises(Exception, match="is a container app"):
            runtimes.process.start(get_app(spec), spec)
        assert runtimes.list() == ()
    finally:
        runtimes.close()


def test_each_app_runs_with_the_runtime_its_spec_names(runtimes: NodeRuntimes) -> None:
    tag = secrets.token_hex(4)
    plain, boxed = _counters(tag)
    plain_spec = get_counter_spec(RuntimeKind.PROCESS, tag=f"p-{tag}")
    boxed_spec = get_counter_spec(RuntimeKind.CONTAINER, tag=f"c-{tag}")
    assert runtimes.kinds == {RuntimeKind.PROCESS, RuntimeKind.CONTAINER}
    runtimes.start(plain, plain_spec, version=1)
    runtimes.start(boxed, boxed_spec, version=3)
    for app in (plain, boxed):
        wait_count_above(runtimes.get_state_dir(app), 1)
    assert {i.app: i.status for i in runtimes.list()} == {
        plain: AppStatus.RUNNING,
        boxed: AppStatus.RUNNING,
    }
    assert runtimes.get_release(boxed) == (boxed_spec, 3)
    assert runtimes.get_release(plain) == (plain_spec, 1)
    # The container app is a container (a libpod cgroup), as an unprivileged user.
    leader = int((runtimes.get_app_dir(boxed) / PID_FILE).read_text().split()[0])
    assert "libpod" in Path(f"/proc/{leader}/cgroup").read_text()
    assert psutil.Process(leader).uids().real != 0
    # Stop keeps the state; start goes on from it; the release says what ran.
    runtimes.stop(boxed)
    assert not runtimes.is_running(boxed)
    assert {i.app: i.status for i in runtimes.list()}[boxed] is AppStatus.STOPPED
    stopped_at = read_count(runtimes.get_state_dir(boxed))
    runtimes.start(boxed, boxed_spec, version=4)
    wait_count_above(runtimes.get_state_dir(boxed), stopped_at)
    runtimes.set_version(boxed, 5)
    assert runtimes.get_release(boxed) == (boxed_spec, 5)
    runtimes.remove(boxed)
    runtimes.remove(plain)
    assert runtimes.list() == ()
    assert not runtimes.get_app_dir(boxed).exists()


def test_a_container_survives_as_stopped_across_a_node_restart(
    podman_services: tuple[PodmanService, PodmanService], tmp_path: Path
) -> None:
    root = tmp_path / "node" / APPS_DIR
    spec = get_counter_spec(RuntimeKind.CONTAINER, tag=f"r-{secrets.token_hex(4)}")
    app = get_app(spec)
    tag = f"n{secrets.token_hex(3)}"
    for incarnation in range(2):
        container = ContainerRuntime(
            root, client=podman_services[0].get_client(), node_tag=tag, network_mode="none"
        )
        runtimes = NodeRuntimes(ProcessRuntime(root, stop_grace_s=1.0), container)
        try:
            if incarnation == 0:
                runtimes.start(app, spec, version=2)
                wait_count_above(runtimes.get_state_dir(app), 1)
            else:
                # The node closed (containers removed): the app is known, stopped, with
                # its state and version; the process runtime does not claim it.
                assert [(i.app, i.status) for i in runtimes.list()] == [(app, AppStatus.STOPPED)]
                assert runtimes.process.list() == ()
                assert runtimes.get_release(app) == (spec, 2)
                runtimes.resume(app)
                wait_count_above(
                    runtimes.get_state_dir(app), read_count(runtimes.get_state_dir(app))
                )
        finally:
            runtimes.close()


def test_the_watchdog_freezes_a_container_app_and_stop_kills_it(
    runtimes: NodeRuntimes, tmp_path: Path
) -> None:
    """The node's lease expires: the watchdog (a real one) stops the container's
    processes; the runtime sees FROZEN, never continues it, and stop kills it."""
    data_dir = runtimes.root.parent
    spec = get_counter_spec(RuntimeKind.CONTAINER, tag=f"f-{secrets.token_hex(4)}")
    spec = replace(spec, command=(*spec.command[:3], "0.05", *spec.command[4:]))
    app = get_app(spec)
    runtimes.start(app, spec)
    state = runtimes.get_state_dir(app)
    wait_count_above(state, 1)
    parent = subprocess.Popen(["sleep", "120"], start_new_session=True)
    watchdog = Watchdog(poll_ms=50)
    try:
        write_lease(data_dir, get_now_ms() + 300, [bytes(app).hex()], parent.pid)
        watchdog.start(data_dir, parent.pid)
        wait_until(lambda: runtimes.stats(app).status is AppStatus.FROZEN, LIMIT_S)
        frozen_at = read_count(state)
        with pytest.raises(Exception, match="frozen by the fencing watchdog"):
            runtimes.pause(app)
        runtimes.stop(app)
        assert not runtimes.is_running(app)
        assert read_count(state) == frozen_at  # it never ran again, not even its trap
    finally:
        watchdog.stop()
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


ESCAPING_SCRIPT = (
    # A daemon started in the container: a session of its own, outside the init's group.
    "busybox setsid /bin/sh -c 'while :; do echo x >> /state/escaped; sleep 0.05; done' "
    "</dev/null >/dev/null 2>&1 & exec sleep 100000"
)


def _escaped_size(state: Path) -> int:
    try:
        return (state / "escaped").stat().st_size
    except FileNotFoundError:
        return 0


def _get_escaped_sessions(leader: int) -> list[psutil.Process]:
    """The session leaders in ``leader``'s PID namespace (its container) but itself:
    the daemons that left its group (not their short-lived ``sleep`` children)."""
    namespace = os.readlink(f"/proc/{leader}/ns/pid")
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(OSError, psutil.Error):
            if (
                process.pid != leader
                and os.readlink(f"/proc/{process.pid}/ns/pid") == namespace
                and os.getsid(process.pid) == process.pid
            ):
                found.append(process)
    return found


def _is_stopped(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def _is_gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_watchdog_freezes_what_left_a_container_apps_group(
    runtimes: NodeRuntimes, tmp_path: Path
) -> None:
    """A process started in the container with ``setsid`` left the init's group, which
    the watchdog stops, and its environment names the container's ``/state``: found by
    the container's PID namespace, it is stopped at expiry, continued with its app when
    the lease lists the app again, and gone once the app is retired."""
    data_dir = runtimes.root.parent
    spec = AppSpec(
        name="escaper",
        runtime=RuntimeKind.CONTAINER,
        image=SAMPLE_IMAGE,
        command=("/bin/sh", "-c", ESCAPING_SCRIPT, secrets.token_hex(4)),
        cpu_bp=10,
        ram_bp=10,
        stateful=True,
    )
    app = get_app(spec)
    runtimes.start(app, spec)
    state = runtimes.get_state_dir(app)
    wait_until(lambda: _escaped_size(state) > 0, LIMIT_S)
    leader = int((runtimes.get_app_dir(app) / PID_FILE).read_text().split()[0])
    escaped = _get_escaped_sessions(leader)
    assert escaped, "the app's daemon should have left the init's group"
    parent = subprocess.Popen(["sleep", "120"], start_new_session=True)
    watchdog = Watchdog(poll_ms=50)
    listed = [bytes(app).hex()]
    try:
        write_lease(data_dir, get_now_ms() + 300, listed, parent.pid)
        watchdog.start(data_dir, parent.pid)
        wait_until(lambda: runtimes.stats(app).status is AppStatus.FROZEN, LIMIT_S)
        wait_until(lambda: all(_is_stopped(p) for p in escaped), LIMIT_S)
        write_lease(data_dir, get_now_ms() + 600_000, listed, parent.pid)
        wait_until(lambda: not any(_is_stopped(p) for p in escaped), LIMIT_S)
        written = _escaped_size(state)
        wait_until(lambda: _escaped_size(state) > written, LIMIT_S)
        expired = get_now_ms() - 1
        write_lease(data_dir, expired, [], parent.pid, expired + 300)
        wait_until(lambda: all(_is_gone(p) for p in escaped), LIMIT_S)
    finally:
        watchdog.stop()
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
        runtimes.stop(app)


def test_a_process_only_node_does_not_load_the_docker_sdk(tmp_path: Path) -> None:
    """The SDK and its HTTP stack cost every node memory: only an engine loads them."""
    script = (
        "import sys, pathlib\n"
        "import edgechain.node, edgechain.cli.node\n"
        "from edgechain.runtime.runtimes import open_node_runtimes\n"
        f"runtimes = open_node_runtimes(pathlib.Path({str(tmp_path)!r}) / 'apps', 'nobody')\n"
        "runtimes.close()\n"
        "print(sorted(m for m in ('docker', 'requests', 'urllib3') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_removed_containers_log_is_kept_as_a_process_apps_is(runtimes: NodeRuntimes) -> None:
    """The engine deletes a container's log with the container: the node keeps its end
    when it deletes the copy (the app runs elsewhere now), and drops it when the chain
    removes the app."""
    tag = secrets.token_hex(4)
    _, boxed = _counters(tag)
    runtimes.start(boxed, get_counter_spec(RuntimeKind.CONTAINER, tag=f"c-{tag}"))
    wait_count_above(runtimes.get_state_dir(boxed), 1)
    running = runtimes.get_log_tail(boxed, 100)
    assert running is not None and running.lines
    runtimes.remove(boxed)
    assert not runtimes.is_running(boxed)
    kept = runtimes.get_log_tail(boxed, 100)
    assert kept is not None and kept.lines[: len(running.lines)] == running.lines
    assert boxed in runtimes.get_kept_logs()
    runtimes.discard_log(boxed)
    assert runtimes.get_log_tail(boxed, 100) is None
