"""CPU shares of the host or of a declared capacity (``runtime/usage.py``), and the
app manager reporting them for a real app."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from edgechain.chain.model import AppUsage, RuntimeKind
from edgechain.consensus.engine import LocalUsage
from edgechain.runtime.manager import AppManager, merge_usage
from edgechain.runtime.process_group import GroupCensus, read_groups
from edgechain.runtime.samples import get_cpu_load_spec
from edgechain.runtime.usage import (
    CpuAverager,
    compute_capacity_bp,
    get_host_cores,
    merge_cpu_bp,
    scale_host_bp,
)
from edgechain.testing import make_identity
from edgechain.types import AppId

from .helpers import get_app, wait_until

ME = make_identity(1)
APP_A = AppId(b"\xaa" * 32)
APP_B = AppId(b"\xbb" * 32)


def test_capacity_shares() -> None:
    assert compute_capacity_bp(0.05, 0.25) == 2_000  # 5 % of a core on a quarter core
    assert compute_capacity_bp(0.5, 0.25) == 10_000  # over capacity: at capacity
    assert compute_capacity_bp(-0.1, 1.0) == 0
    assert compute_capacity_bp(0.1, 0.0) == 0
    # 1 % of a 2-core host is 2 % of one core, 8 % of a quarter core.
    assert scale_host_bp(100, 0.25, host_cores=2) == 800
    assert scale_host_bp(100.4, None, host_cores=2) == 100  # no capacity: unchanged
    assert scale_host_bp(20_000, None) == 10_000
    assert scale_host_bp(9_000, 1.0, host_cores=2) == 10_000


def test_node_total_is_its_apps_alone_under_a_capacity() -> None:
    # A declared capacity: the cores offered to apps; the node's own work is left out.
    assert merge_cpu_bp(1_500, [2_000, 1_000], apps_only=True) == 3_000
    assert merge_cpu_bp(0, [6_000, 5_000], apps_only=True) == 10_000
    assert merge_cpu_bp(0, [], apps_only=True) == 0
    # Host-wide use already holds the apps: raised to their sum, never added.
    assert merge_cpu_bp(1_500, [2_000, 1_000], apps_only=False) == 3_000
    assert merge_cpu_bp(5_000, [2_000], apps_only=False) == 5_000
    host = LocalUsage(cpu_bp=1_000, ram_bp=500, pressure_bp=700)
    apps = (AppUsage(APP_A, 3_000, 100, 0, 0, 0), AppUsage(APP_B, 2_000, 100, 0, 0, 0))
    merged = merge_usage(host, apps, apps_only_cpu=True)
    assert (merged.cpu_bp, merged.ram_bp, merged.pressure_bp, merged.apps) == (
        5_000, 500, 700, apps,
    )  # fmt: skip
    assert merge_usage(host, apps).cpu_bp == 5_000
    assert merge_usage(LocalUsage(cpu_bp=6_000), apps).cpu_bp == 6_000


def test_averager_skips_the_baseline_and_forgets_stopped_apps() -> None:
    averager = CpuAverager(samples=3)
    assert averager.add(APP_A, 0) is None  # the runtime's baseline sample
    assert averager.add(APP_A, 300) == 300.0
    assert averager.add(APP_A, 100) == 200.0
    assert averager.add(APP_A, 200) == 200.0
    assert averager.add(APP_A, 600) == 300.0  # the oldest sample has left the window
    assert averager.add(APP_B, 900) is None
    averager.retain({APP_B})
    assert averager.add(APP_A, 500) is None  # started again: a new baseline
    assert averager.add(APP_B, 100) == 100.0


@pytest.mark.parametrize("capacity", [None, 0.5])
def test_manager_reports_app_cpu_as_a_share_of_the_capacity(
    tmp_path: Path, capacity: float | None
) -> None:
    """A real cpu-load app (20 % of a core): its reported share is the CPU it used over
    the sampled span, of the capacity (else of the host), averaged over the samples."""
    manager = AppManager(tmp_path / "node", ME.node, ME.sk, cpu_capacity=capacity)
    spec = get_cpu_load_spec(RuntimeKind.PROCESS, share_percent=20, period_ms=100)
    app = get_app(spec)
    try:
        manager.runtime.start(app, spec)
        pid = manager.runtime.process.get_pid(app)
        assert pid is not None
        asyncio.run(manager.usage.measure())  # the baseline
        # No figure yet: the app is left out of the report, not listed at 0 CPU.
        assert not manager.app_usage
        assert [v["app"] for v in manager.get_views()] == [bytes(app).hex()]
        started, cpu_then = time.monotonic(), read_groups()[pid].cpu_s
        for _ in range(5):
            time.sleep(0.4)  # the sampling interval (the manager's is ~1 s)
            asyncio.run(manager.usage.measure())
        span, used = time.monotonic() - started, read_groups()[pid].cpu_s - cpu_then
        (usage,) = manager.app_usage
        expected = scale_host_bp(used / span / get_host_cores() * 10_000, capacity)
        assert usage.app == app
        assert abs(usage.cpu_bp - expected) <= 0.3 * expected + 300, (usage, expected)
        assert manager.get_views()[0]["cpu_bp"] == usage.cpu_bp
    finally:
        asyncio.run(manager.close())


def test_census_sums_a_whole_group_and_serves_a_round(tmp_path: Path) -> None:
    """One pass over /proc: the group's forked busy loop counts, another group does
    not, and calls within the census's age share one reading."""
    burn = "( while :; do :; done ) & sleep 30"
    group = subprocess.Popen(["/bin/sh", "-c", burn], start_new_session=True)
    other = subprocess.Popen(["/bin/sh", "-c", "sleep 30"], start_new_session=True)
    try:
        # The group as it runs: its shell started, its busy loop forked. Read at once
        # after Popen, the leader may still be in exec, with no memory mapped (rss 0;
        # CI saw it once on a loaded host).
        wait_until(
            lambda: group.pid in read_groups() and len(read_groups()[group.pid].members) >= 2
        )
        census = GroupCensus(max_age_s=60.0)
        taken, first = census.get(group.pid)
        assert first is not None and first.rss > 0
        assert census.get(group.pid) == (taken, first)  # the same census
        _, idle = census.get(other.pid)
        assert idle is not None and idle.cpu_s < 0.05
        assert census.get(2**22 + 12345)[1] is None
        # The leader sleeps in `sleep 30`: only its forked busy loop can add CPU time.
        started = time.monotonic()
        wait_until(lambda: read_groups()[group.pid].cpu_s - first.cpu_s >= 0.05)
        assert (
            read_groups()[group.pid].cpu_s - first.cpu_s <= 2 * (time.monotonic() - started) + 0.1
        )
        assert read_groups()[other.pid].cpu_s < 0.05
    finally:
        for proc in (group, other):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
