"""The container runtime against real Podman API services (two nodes, two image stores).

The sample apps run in the python-free busybox image; migrations go through the real
transfer over loopback. Every container a test starts is removed by the runtime's
``close`` (and the session fixture removes anything left before stopping podman).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.chain.model import AppSpec, PlanEntry, RuntimeKind
from edgechain.lab.faults_live import is_cgroup_frozen, is_dying
from edgechain.runtime.base import AppRuntime, AppRuntimeError, AppStatus
from edgechain.runtime.container import ContainerRuntime
from edgechain.runtime.container_engine import is_criu_available
from edgechain.runtime.podman import PodmanService
from edgechain.runtime.samples import SAMPLE_IMAGE, get_counter_spec, get_cpu_load_spec
from edgechain.runtime.spawner import PID_FILE, read_pid_file
from edgechain.runtime.transfer import MigrationOutcome
from edgechain.types import BlockHash

from .helpers import (
    TamperProxy,
    assert_single_instance,
    get_app,
    get_entry,
    get_tagged_processes,
    open_nodes,
    read_count,
    wait_count_above,
    wait_until,
)

pytestmark = [pytest.mark.podman, pytest.mark.xdist_group("podman")]

Services = tuple[PodmanService, PodmanService]
Pair = tuple[ContainerRuntime, ContainerRuntime]


@pytest.fixture
def container_pair(podman_services: Services, tmp_path: Path) -> Iterator[Pair]:
    """Node A on service A, node B on service B; both closed (containers removed)."""
    a = ContainerRuntime(
        tmp_path / "node-a",
        client=podman_services[0].get_client(),
        node_tag=f"a{secrets.token_hex(3)}",
        network_mode="none",
        stop_grace_s=1,
    )
    b = ContainerRuntime(
        tmp_path / "node-b",
        client=podman_services[1].get_client(),
        node_tag=f"b{secrets.token_hex(3)}",
        network_mode="none",
        stop_grace_s=1,
    )
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _counter(pad: int = 0, image: str = SAMPLE_IMAGE) -> tuple[AppSpec, str]:
    tag = f"c-{secrets.token_hex(4)}"
    spec = get_counter_spec(
        RuntimeKind.CONTAINER, pad_bytes=pad, interval_s=0.05, tag=tag, image=image
    )
    return spec, tag


def _start_counter(runtime: ContainerRuntime, pad: int = 0, image: str = SAMPLE_IMAGE) -> AppSpec:
    spec, _ = _counter(pad, image)
    app = get_app(spec)
    runtime.start(app, spec)
    state = runtime.get_state_dir(app)
    if pad:
        wait_until((state / "pad").exists)
    wait_count_above(state, 1)
    return spec


def test_lifecycle_stats_and_list(container_pair: Pair) -> None:
    a, _ = container_pair
    assert isinstance(a, AppRuntime)
    assert a.criu_available is is_criu_available()
    spec = _start_counter(a)
    app = get_app(spec)
    tag = spec.command[-1]
    assert_single_instance(tag)  # the container's sh is a host process like any other
    assert [(i.app, i.name, i.status) for i in a.list()] == [(app, "counter", AppStatus.RUNNING)]
    state = a.get_state_dir(app)
    a.pause(app)
    assert a.stats(app).status is AppStatus.PAUSED
    frozen = read_count(state)
    time.sleep(0.3)
    assert read_count(state) == frozen
    a.resume(app)
    assert wait_count_above(state, frozen) > frozen
    a.stop(app)
    assert a.stats(app).status is AppStatus.STOPPED
    assert get_tagged_processes(tag) == []
    stopped_at = read_count(state)
    a.resume(app)  # restarts from the state dir: never from zero
    assert wait_count_above(state, stopped_at) > stopped_at
    with pytest.raises(AppRuntimeError):
        a.start(app, spec)
    a.remove(app)
    assert a.list() == ()
    assert not a.get_app_dir(app).exists()


def test_an_ended_container_is_listed_with_its_exit_and_last_words(container_pair: Pair) -> None:
    """A container that ends on its own is listed stopped with the engine's exit code
    and the last line it wrote (from the engine's log), which a failure's reason shows
    (``restart_backoff.describe_exit``); a stop of ours has neither."""
    a, _ = container_pair
    tag = f"f-{secrets.token_hex(4)}"
    # It runs a moment first: the runtime records the container's init once it runs,
    # and a container whose init it never saw cannot be told to have ended on its own.
    script = "echo starting; sleep 5; echo 'boom: no such thing' >&2; exit 3"
    command = ("/bin/sh", "-c", script, tag)
    spec = AppSpec(name="failing", runtime=RuntimeKind.CONTAINER, image=SAMPLE_IMAGE,
                   command=command)  # fmt: skip
    app = get_app(spec)
    a.start(app, spec)

    def ended() -> bool:
        return [i.status for i in a.list()] == [AppStatus.STOPPED]

    wait_until(ended, timeout_s=60.0)
    [info] = a.list()
    assert (info.exit_code, info.last_output) == (3, "boom: no such thing")
    a.remove(app)


def test_cpu_load_shows_in_stats(container_pair: Pair) -> None:
    a, _ = container_pair
    spec = get_cpu_load_spec(RuntimeKind.CONTAINER, share_percent=60, tag=secrets.token_hex(4))
    app = get_app(spec)
    a.start(app, spec)
    a.stats(app)
    time.sleep(1.0)
    stats = a.stats(app)
    assert 200 < stats.cpu_bp <= 10_000
    assert stats.rss_bytes > 0


def test_save_archives_only_the_state(container_pair: Pair) -> None:
    a, _ = container_pair
    spec = _start_counter(a, pad=200_000)
    app = get_app(spec)
    saved = a.save(app)
    assert saved.live and not saved.includes_image
    assert a.stats(app).status is AppStatus.PAUSED
    assert 200_000 < saved.raw_bytes < 300_000  # the state, not the image
    a.resume(app)
    assert a.stats(app).status is AppStatus.RUNNING


def test_migrations_between_nodes_keep_the_counter(container_pair: Pair, tmp_path: Path) -> None:
    a, b = container_pair
    spec = _start_counter(a, pad=1 << 20)
    app = get_app(spec)
    tag = spec.command[-1]

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            hops = [(na, nb, a, b), (nb, na, b, a), (na, nb, a, b)]
            for block, (src, dst, src_rt, dst_rt) in enumerate(hops, start=1):
                before = read_count(src_rt.get_state_dir(app))
                result = await src.migrate_to(dst, spec, block)
                assert result.outcome is MigrationOutcome.COMPLETED, result
                assert result.live and not result.included_image
                assert result.raw_bytes > 1 << 20
                # Retired: no container, the handed-over state kept (a reorg may need it).
                assert not src_rt.is_running(app)
                assert [(i.app, i.status) for i in src_rt.list()] == [(app, AppStatus.STOPPED)]
                assert dst_rt.is_running(app)
                assert_single_instance(tag)
                first = read_count(dst_rt.get_state_dir(app))
                assert first >= before  # continues: never from zero, never backwards
                wait_count_above(dst_rt.get_state_dir(app), first)

    asyncio.run(run())


def test_destination_without_the_image_receives_it(
    podman_services: Services, container_pair: Pair, tmp_path: Path
) -> None:
    a, b = container_pair
    # An image only node A has: a new tag of the sample image on service A.
    repository, version = "localhost/edgechain-only-a", secrets.token_hex(3)
    image = f"{repository}:{version}"
    client = podman_services[0].get_client()
    try:
        assert client.images.get(SAMPLE_IMAGE).tag(repository, tag=version)
    finally:
        client.close()
    spec = _start_counter(a, image=image)
    app = get_app(spec)
    assert not b.has_image(spec)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path) as (na, nb):
            before = read_count(a.get_state_dir(app))
            result = await na.migrate_to(nb, spec, 1)
            assert result.outcome is MigrationOutcome.COMPLETED, result
            assert result.included_image
            assert result.raw_bytes > 1_000_000  # busybox came along
            assert b.has_image(spec)
            first = read_count(b.get_state_dir(app))
            assert first >= before
            wait_count_above(b.get_state_dir(app), first)

    try:
        asyncio.run(run())
        assert_single_instance(spec.command[-1])
    finally:
        b.remove(app)
        client = podman_services[1].get_client()
        try:
            client.images.remove(image, force=True)
        finally:
            client.close()


def test_refused_and_corrupted_migrations_keep_the_container(
    container_pair: Pair, tmp_path: Path
) -> None:
    a, b = container_pair
    spec = _start_counter(a, pad=1 << 20)
    app = get_app(spec)
    tag = spec.command[-1]

    def is_planned(block_hash: BlockHash, entry: PlanEntry) -> bool:
        del entry
        return block_hash != bytes(32)

    async def run() -> None:
        async with open_nodes([a, b], tmp_path, is_planned=is_planned) as (na, nb):
            result = await na.client.migrate(
                BlockHash(bytes(32)),
                get_entry(spec, na.node_id, nb.node_id),
                spec,
                "127.0.0.1",
                nb.port,
            )
            assert result.outcome is MigrationOutcome.REFUSED
            assert a.stats(app).status is AppStatus.RUNNING
            proxy = TamperProxy(nb.port, flip_at=500_000)
            port = await proxy.start()
            try:
                before = read_count(a.get_state_dir(app))
                result = await na.migrate_to(nb, spec, 2, port=port)
            finally:
                await proxy.close()
            assert result.outcome is MigrationOutcome.FAILED
            assert result.live  # it was frozen, then unpaused
            assert a.stats(app).status is AppStatus.RUNNING
            first = read_count(a.get_state_dir(app))
            assert first >= before
            wait_count_above(a.get_state_dir(app), first)

    asyncio.run(run())
    assert b.list() == ()
    assert_single_instance(tag)


def _watch_for_a_thawed_run(pid: int, stop: threading.Event) -> list[str]:
    """Sample ``pid`` until it is gone (or ``stop``): each sample in which it was out of
    the freezer with no SIGKILL pending, i.e. free to run its own code."""
    free: list[str] = []
    while not stop.is_set():
        status = Path(f"/proc/{pid}/status")
        if not status.exists():
            break
        if not is_cgroup_frozen(pid) and not is_dying(pid) and status.exists():
            free.append(f"{time.monotonic():.4f}")
    return free


@pytest.mark.parametrize("end", ["remove", "retire"])
def test_a_paused_container_ended_never_runs_again(container_pair: Pair, end: str) -> None:
    """A migration's origin is paused for its save; ending it then (the handover done:
    ``retire``; the app removed: ``remove``) must not thaw it to run even briefly while
    its copy runs at the destination. The engine's forced removal of a paused container
    thaws it first (about 8 ms of running, measured); the runtime kills it before."""
    a, _ = container_pair
    spec = _start_counter(a)
    app = get_app(spec)
    pid_file = read_pid_file(a.get_app_dir(app) / PID_FILE)
    assert pid_file is not None
    pid = pid_file[0]
    assert a.save(app).live and a.stats(app).status is AppStatus.PAUSED
    wait_until(lambda: is_cgroup_frozen(pid))
    stop = threading.Event()
    seen: list[list[str]] = []
    watcher = threading.Thread(target=lambda: seen.append(_watch_for_a_thawed_run(pid, stop)))
    watcher.start()
    try:
        getattr(a, end)(app)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout_s=30)
    finally:
        stop.set()
        watcher.join()
    assert seen == [[]], f"ran free at {seen[0][:5]} (of {len(seen[0])} samples)"


def test_stopping_a_dead_service_still_removes_its_containers(
    podman_services: Services, tmp_path: Path
) -> None:
    """A container outlives its service (its conmon is outside the service's group), so
    a testnet whose engine died with its node (one ``pkill`` for the run directory)
    left a frozen container behind. ``stop`` removes them through the CLI then."""
    del podman_services  # only for its check that podman runs containers here
    base = Path(tempfile.mkdtemp(prefix="ecpd-", dir="/tmp"))
    service = PodmanService(base / "a")
    try:
        service.start()
        service.import_sample_image()
        tag = f"orphan-{secrets.token_hex(4)}"
        client = service.get_client()
        try:
            client.containers.run(
                SAMPLE_IMAGE,
                ["/bin/sh", "-c", "sleep 600; true", tag],
                detach=True,
                network_mode="none",
            )
        finally:
            client.close()
        wait_until(lambda: bool(get_tagged_processes(tag)))
        assert service._proc is not None
        os.killpg(service._proc.pid, signal.SIGKILL)
        service._proc.wait()
        assert get_tagged_processes(tag), "the container runs on without its service"
        service.stop()
        wait_until(lambda: not get_tagged_processes(tag))
    finally:
        service.destroy()
        shutil.rmtree(base, ignore_errors=True)
