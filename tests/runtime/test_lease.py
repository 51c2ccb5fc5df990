"""The fencing lease file, the node's lease writer, and the watchdog's view of /proc.

The watchdog reads what the node and the runtime write (``lease.json``, pid files), so
these pin the formats both sides share (DESIGN.md, "Exactly once").
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from edgechain.runtime import spawner
from edgechain.runtime.fencing import LeaseWriter, get_frozen_apps, get_watchdog_command
from edgechain.runtime.head_queries import HeadQueries
from edgechain.runtime.lease import (
    LEASE_FILE,
    PID_FILE,
    WATCHDOG_STATE_FILE,
    Lease,
    get_lease_path,
    get_now_ms,
    is_expired,
    read_lease,
    read_pid_entry,
    write_lease,
)
from edgechain.runtime.lease_renewal import LeaseRenewal
from edgechain.runtime.watchdog import Fence, find_process, parse_args, read_boot_time
from edgechain.testing import make_identity, make_params

from .helpers import wait_until

APP_A, APP_B = "aa" * 32, "bb" * 32


def test_a_written_lease_reads_back(tmp_path: Path) -> None:
    write_lease(tmp_path, 1234, [APP_B, APP_A], 42)
    path = tmp_path / LEASE_FILE
    assert json.loads(path.read_text()) == {
        "valid_until_ms": 1234,
        "apps": [APP_A, APP_B],
        "node_pid": 42,
    }
    assert read_lease(path) == Lease(1234, frozenset({APP_A, APP_B}), 42)
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == [LEASE_FILE]  # no temporary left


def test_a_rewrite_replaces_the_lease(tmp_path: Path) -> None:
    write_lease(tmp_path, 1, [APP_A], 1)
    write_lease(tmp_path, 2, [], 1)
    assert read_lease(get_lease_path(tmp_path)) == Lease(2, frozenset(), 1)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        "[]",
        '{"apps": [], "node_pid": 1}',
        '{"valid_until_ms": "9", "apps": [], "node_pid": 1}',
        '{"valid_until_ms": true, "apps": [], "node_pid": 1}',
        '{"valid_until_ms": 9, "apps": "aa", "node_pid": 1}',
        '{"valid_until_ms": 9, "apps": [1], "node_pid": 1}',
        '{"valid_until_ms": 9, "apps": [], "node_pid": null}',
    ],
)
def test_a_malformed_lease_is_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / LEASE_FILE
    path.write_text(content)
    assert read_lease(path) is None


def test_a_missing_lease_is_none_and_expired(tmp_path: Path) -> None:
    assert read_lease(tmp_path / LEASE_FILE) is None
    assert is_expired(None, 0)


def test_a_lease_expires_after_its_last_millisecond() -> None:
    lease = Lease(1000, frozenset(), 1)
    assert not is_expired(lease, 999)
    assert not is_expired(lease, 1000)
    assert is_expired(lease, 1001)


def test_pid_files_are_read_as_the_spawner_writes_them(tmp_path: Path) -> None:
    assert PID_FILE == spawner.PID_FILE
    path = tmp_path / PID_FILE
    spawner.write_pid_file(path, os.getpid())
    assert read_pid_entry(path) == spawner.read_pid_file(path)
    path.write_text("garbage\n")
    assert read_pid_entry(path) is None
    assert read_pid_entry(tmp_path / "missing") is None


def test_the_watchdog_knows_a_process_by_psutils_create_time() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        created = psutil.Process(proc.pid).create_time()
        boot_time = read_boot_time()
        assert find_process(proc.pid, created, boot_time) in {"S", "R"}
        assert find_process(proc.pid, created - 1.0, boot_time) is None  # a reused pid
        proc.send_signal(signal.SIGSTOP)
        wait_until(lambda: find_process(proc.pid, created, boot_time) == "T")
    finally:
        proc.kill()
        proc.wait()
    assert find_process(proc.pid, created, read_boot_time()) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read_written(data_dir: Path) -> tuple[int, frozenset[str]]:
    lease = read_lease(get_lease_path(data_dir))
    assert lease is not None
    return lease.valid_until_ms, lease.apps


def test_the_lease_writer_writes_changes_at_once_and_renewals_at_a_rate(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = LeaseWriter(tmp_path, node_pid=7, min_interval_ms=200, clock=clock)
    a, b = bytes.fromhex(APP_A), bytes.fromhex(APP_B)
    writer.renew(1000, [a])
    assert read_written(tmp_path) == (1000, frozenset({APP_A}))
    writer.renew(1100, [a])  # only later: waits for the interval
    assert read_written(tmp_path) == (1000, frozenset({APP_A}))
    clock.now += 0.2
    writer.renew(1100, [a])
    assert read_written(tmp_path) == (1100, frozenset({APP_A}))
    writer.renew(1150, [a, b])  # other apps: at once
    assert read_written(tmp_path) == (1150, frozenset({APP_A, APP_B}))
    writer.renew(900, [a, b])  # shorter: at once
    assert read_written(tmp_path) == (900, frozenset({APP_A, APP_B}))
    lease = read_lease(get_lease_path(tmp_path))
    assert lease is not None and lease.node_pid == 7


def test_a_failed_renewal_is_retried(tmp_path: Path) -> None:
    data_dir = tmp_path / "not-yet"
    writer = LeaseWriter(data_dir, clock=FakeClock())
    writer.renew(1000, [])  # the directory is missing: logged, not raised
    data_dir.mkdir()
    writer.renew(1000, [])
    assert read_written(data_dir) == (1000, frozenset())


def test_frozen_apps_come_from_the_watchdog_state(tmp_path: Path) -> None:
    assert get_frozen_apps(tmp_path) == set()
    state = tmp_path / WATCHDOG_STATE_FILE
    state.write_text(json.dumps({"frozen": [APP_A], "since_ms": get_now_ms(), "pid": 1}))
    assert get_frozen_apps(tmp_path) == {APP_A}
    state.write_text('{"frozen": "nonsense"}')
    assert get_frozen_apps(tmp_path) == set()


def test_the_watchdog_runs_isolated_from_site_packages(tmp_path: Path) -> None:
    command = get_watchdog_command(tmp_path, 100, 1)
    assert command[:5] == [sys.executable, "-I", "-S", "-c", command[4]]
    assert command[-6:] == ["--data-dir", str(tmp_path), "--poll-ms", "100", "--parent-pid", "1"]


# --- the node's clock offset (--clock-offset-ms) -----------------------------------------


def test_the_watchdog_compares_the_lease_with_the_nodes_shifted_clock(tmp_path: Path) -> None:
    """The node writes the lease in its clock, offset included; a watchdog given the
    same offset judges it as the node does, whatever the host's clock says."""
    now = get_now_ms()
    valid = Lease(now + 60_000, frozenset(), 1)  # by the host's clock
    expired = Lease(now - 1, frozenset(), 1)
    assert not is_expired(valid, Fence(str(tmp_path)).now_ms())
    assert is_expired(valid, Fence(str(tmp_path), clock_offset_ms=120_000).now_ms())
    assert is_expired(expired, Fence(str(tmp_path)).now_ms())
    assert not is_expired(expired, Fence(str(tmp_path), clock_offset_ms=-60_000).now_ms())


def test_the_node_starts_its_watchdog_with_its_clock_offset(tmp_path: Path) -> None:
    assert not any("clock-offset" in arg for arg in get_watchdog_command(tmp_path, 100, 1))
    command = get_watchdog_command(tmp_path, 100, 1, -1500)
    assert command[-1] == "--clock-offset-ms=-1500"
    assert parse_args(command[6:]).clock_offset_ms == -1500
    assert parse_args(command[6:-1]).clock_offset_ms == 0


def test_the_lease_renewal_judges_its_lease_by_the_nodes_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node never starts an app under a lease its own (shifted) clock says expired."""
    node = make_identity(1).node
    head = HeadQueries(node)
    head.engine = SimpleNamespace(params=make_params())
    now = get_now_ms()

    def renewal(clock_offset_ms: int) -> LeaseRenewal:
        renewal = LeaseRenewal(
            node, head, LeaseWriter(tmp_path), list, clock=lambda: get_now_ms(clock_offset_ms)
        )
        monkeypatch.setattr(renewal, "get_until", lambda: now + 60_000)
        return renewal

    assert renewal(0).is_valid()
    assert not renewal(60_000).is_valid()
    assert renewal(-3_600_000).is_valid()
