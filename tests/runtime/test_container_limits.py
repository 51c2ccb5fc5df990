"""Container limits (block format 5): the engine's kwargs, what Podman enforces with
them, and the state directory's kernel-enforced size (``runtime/state_quota.py``)."""

from __future__ import annotations

import dataclasses
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgechain.chain.model import AppSpec, RuntimeKind
from edgechain.runtime.app_log import MAX_LOG_BYTES
from edgechain.runtime.container_limits import (
    DEFAULT_PIDS_LIMIT,
    NO_NEW_PRIVILEGES,
    ContainerLimitsError,
    get_container_limits,
)
from edgechain.runtime.podman import PodmanService
from edgechain.runtime.samples import SAMPLE_IMAGE
from edgechain.runtime.state_quota import (
    StateQuotaError,
    apply_state_quota,
    discard_state_quota,
    get_image_path,
    get_state_usage,
    is_loop_quota_available,
    is_mounted,
    release_state_quota,
)

USER = "65534:65534"
MIB = 1024 * 1024
SPEC = AppSpec("app", RuntimeKind.CONTAINER, image=SAMPLE_IMAGE)
Services = tuple[PodmanService, PodmanService]

needs_loop = pytest.mark.skipif(
    not is_loop_quota_available(), reason="needs root and loop-mountable ext4 images"
)


def with_limits(**changes: Any) -> AppSpec:
    return dataclasses.replace(SPEC, **changes)


# --- the kwargs ------------------------------------------------------------------------


def test_no_limits_still_caps_processes_and_drops_root() -> None:
    assert get_container_limits(SPEC, user=USER) == {
        "pids_limit": DEFAULT_PIDS_LIMIT,
        "log_config": {"type": "json-file", "config": {"max-size": "8m"}},  # 8 MiB
        "user": USER,
        "security_opt": [NO_NEW_PRIVILEGES],
    }
    assert MAX_LOG_BYTES == 8 * MIB


def test_every_limit() -> None:
    spec = with_limits(
        cpu_limit_millicores=1_500,
        memory_limit_bytes=64 * MIB,
        state_limit_bytes=2**30,  # not an engine kwarg: see state_quota
    )
    kwargs = get_container_limits(spec, user=USER)
    assert kwargs["nano_cpus"] == 1_500_000_000
    assert kwargs["mem_limit"] == kwargs["memswap_limit"] == 64 * MIB
    assert set(kwargs) == {
        "pids_limit", "log_config", "user", "security_opt", "nano_cpus", "mem_limit",
        "memswap_limit",
    }  # fmt: skip


def test_cpu_limit_is_capped_at_the_hosts_cores_when_given() -> None:
    spec = with_limits(cpu_limit_millicores=8_000)
    assert get_container_limits(spec, user=USER)["nano_cpus"] == 8 * 10**9
    assert get_container_limits(spec, user=USER, host_cpus=2)["nano_cpus"] == 2 * 10**9


def test_root_only_by_the_specs_opt_in() -> None:
    kwargs = get_container_limits(with_limits(run_as_root=True), user=USER)
    assert kwargs["user"] == "0:0"
    assert "security_opt" not in kwargs


@pytest.mark.parametrize("user", ["0:0", "0:1000", "nobody", "1000", "1000:", "-1:-1", ""])
def test_the_nodes_user_must_be_a_numeric_non_root_uid_gid(user: str) -> None:
    with pytest.raises(ContainerLimitsError):
        get_container_limits(SPEC, user=user)


def test_a_process_spec_has_no_container_limits() -> None:
    spec = AppSpec("p", RuntimeKind.PROCESS, command=("true",), cpu_limit_millicores=100)
    with pytest.raises(ContainerLimitsError):
        get_container_limits(spec, user=USER)


# --- the state quota (kernel-enforced where loop mounts work) ---------------------------


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "app" / "state"
    state.mkdir(parents=True)
    try:
        yield state
    finally:
        discard_state_quota(state)


def fill(path: Path, size: int) -> int:
    """Write up to ``size`` bytes; how many the file system took."""
    written = 0
    try:
        with path.open("wb") as f:
            while written < size:
                f.write(b"x" * MIB)
                f.flush()
                os.fsync(f.fileno())
                written += MIB
    except OSError:
        pass
    return path.stat().st_size


def test_without_loop_mounts_the_limit_is_measured(state_dir: Path) -> None:
    assert not apply_state_quota(state_dir, 0)
    (state_dir / "data").write_bytes(b"y" * 3000)
    usage = get_state_usage(state_dir, 2000)
    assert (usage.used_bytes, usage.is_over, usage.enforced) == (3000, True, False)
    assert not get_state_usage(state_dir, 0).is_over


@needs_loop
def test_the_kernel_refuses_writes_beyond_the_limit(state_dir: Path) -> None:
    (state_dir / "kept").write_text("restored state")
    assert apply_state_quota(state_dir, 8 * MIB, owner=(65534, 65534))
    assert is_mounted(state_dir) and state_dir.stat().st_uid == 65534
    assert sorted(p.name for p in state_dir.iterdir()) == ["kept"]
    stored = fill(state_dir / "big", 32 * MIB)
    assert 4 * MIB < stored <= 8 * MIB
    assert get_state_usage(state_dir, 8 * MIB).enforced
    (state_dir / "big").unlink()
    # Idempotent, then resized by an UPDATE, contents kept.
    assert apply_state_quota(state_dir, 8 * MIB)
    assert apply_state_quota(state_dir, 16 * MIB)
    assert get_image_path(state_dir).stat().st_size == 16 * MIB
    assert (state_dir / "kept").read_text() == "restored state"
    # Lifted: a plain directory again, contents kept, image gone.
    release_state_quota(state_dir)
    assert not is_mounted(state_dir) and not get_image_path(state_dir).exists()
    assert (state_dir / "kept").read_text() == "restored state"


@needs_loop
def test_a_state_larger_than_its_limit_is_refused(state_dir: Path) -> None:
    (state_dir / "big").write_bytes(b"z" * 3 * MIB)
    with pytest.raises(StateQuotaError):
        apply_state_quota(state_dir, 2 * MIB)
    assert not is_mounted(state_dir) and not get_image_path(state_dir).exists()
    assert (state_dir / "big").stat().st_size == 3 * MIB  # nothing lost
    assert apply_state_quota(state_dir, 8 * MIB)
    (state_dir / "small").write_bytes(b"s")
    with pytest.raises(StateQuotaError):
        apply_state_quota(state_dir, 2 * MIB)  # shrinking below the state
    assert apply_state_quota(state_dir, 8 * MIB)
    assert (state_dir / "big").stat().st_size == 3 * MIB


# --- against a real Podman service --------------------------------------------------------


def run_to_exit(client: Any, command: list[str], timeout_s: float = 60.0, **kwargs: Any) -> Any:
    """Create, start and poll a container until it exits (as ``check_can_run`` does);
    the caller removes it."""
    container = client.containers.create(
        SAMPLE_IMAGE, command, network_mode="none", name=f"limits-{secrets.token_hex(4)}",
        **kwargs,
    )  # fmt: skip
    container.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        container.reload()
        if container.attrs.get("State", {}).get("Status") == "exited":
            return container
        time.sleep(0.05)
    container.remove(force=True)
    raise AssertionError(f"{command} did not exit within {timeout_s}s")


@pytest.fixture
def client(podman_services: Services) -> Iterator[Any]:
    engine = podman_services[0].get_client()
    try:
        yield engine
    finally:
        engine.close()


@pytest.mark.podman
@pytest.mark.xdist_group("podman")
def test_the_engine_oom_kills_beyond_the_memory_limit(client: Any) -> None:
    kwargs = get_container_limits(with_limits(memory_limit_bytes=16 * MIB), user=USER)
    # conmon writes an ``oom`` file into the service's working directory at the kill:
    # the service's own (``PodmanService.start``), never ours (it was committed twice).
    stray = Path.cwd() / "oom"
    was_there = stray.exists()
    # busybox dd reads into a buffer of bs bytes: 64 MiB touched, against a 16 MiB cap.
    for size, killed in (("64M", True), ("4M", False)):
        command = ["/bin/busybox", "dd", "if=/dev/zero", "of=/dev/null", f"bs={size}", "count=1"]
        container = run_to_exit(client, command, **kwargs)
        try:
            state = container.attrs["State"]
            assert (state["ExitCode"] == 137) is killed, (size, state)  # 128 + SIGKILL
        finally:
            container.remove(force=True)
    assert was_there or not stray.exists()


@pytest.mark.podman
@pytest.mark.xdist_group("podman")
def test_the_engine_keeps_a_chatty_containers_log_bounded(client: Any) -> None:
    """12 MB of output against the 8 MiB cap: the engine's log file stays under the
    cap (Podman truncates it when it reaches the cap, even within a line), and the
    latest output is there."""
    burst = (MAX_LOG_BYTES + 4 * 1024 * 1024) // 7 * 7  # whole "chatty\n" lines
    command = ["/bin/sh", "-c", f"yes chatty | head -c {burst}; echo last line"]
    container = run_to_exit(client, command, **get_container_limits(SPEC, user=USER))
    try:
        log_path = Path(container.attrs["LogPath"])
        assert 0 < log_path.stat().st_size <= MAX_LOG_BYTES
        # Its latest output is kept (whole, or its end when the cap fell in that line).
        last = container.logs(tail=1)
        assert last.endswith(b"ine\n") and b"last line\n".endswith(last), last
    finally:
        container.remove(force=True)


@pytest.mark.podman
@pytest.mark.xdist_group("podman")
def test_the_engine_applies_cpu_pids_and_user(client: Any) -> None:
    spec = with_limits(cpu_limit_millicores=250, memory_limit_bytes=32 * MIB)
    script = (
        "id -u; id -g; cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
        " /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes;"
        " cat /proc/self/status"
    )
    container = run_to_exit(
        client, ["/bin/sh", "-c", script], **get_container_limits(spec, user=USER)
    )
    try:
        lines = container.logs().decode().splitlines()
    finally:
        container.remove(force=True)
    uid, gid, quota, period, pids, memsw = lines[:6]
    assert (uid, gid) == ("65534", "65534")
    assert int(quota) * 1000 // int(period) == 250  # a quarter of a core per period
    assert int(pids) == DEFAULT_PIDS_LIMIT
    assert int(memsw) == 32 * MIB  # memory + swap capped: no swap past the limit
    assert "NoNewPrivs:\t1" in lines


@needs_loop
@pytest.mark.podman
@pytest.mark.xdist_group("podman")
def test_a_container_cannot_grow_its_state_past_the_limit(client: Any, state_dir: Path) -> None:
    spec = with_limits(state_limit_bytes=4 * MIB)
    assert apply_state_quota(state_dir, spec.state_limit_bytes, owner=(65534, 65534))
    script = "/bin/busybox dd if=/dev/zero of=/state/fill bs=1M count=16; echo rc=$?"
    container = run_to_exit(
        client,
        ["/bin/sh", "-c", script],
        volumes={str(state_dir): {"bind": "/state", "mode": "rw"}},
        **get_container_limits(spec, user=USER),
    )
    try:
        logs = container.logs().decode()
    finally:
        container.remove(force=True)
    assert "No space left on device" in logs and "rc=1" in logs
    assert (state_dir / "fill").stat().st_size <= 4 * MIB
