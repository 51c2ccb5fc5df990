"""``runtime/disk_guard.py``: the node stops and holds the app that fills its disk, and
only that app, and lets it run again once there is room."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgechain.runtime.disk_guard import (
    MAX_RESERVE_BYTES,
    MIB,
    MIN_RESERVE_BYTES,
    DiskGuard,
    DiskSpace,
    StateSize,
    compute_reserve,
    read_disk_space,
)
from edgechain.types import AppId

GIB = 1024 * MIB
WRITER, QUIET, BIG = AppId(b"\x01" * 32), AppId(b"\x02" * 32), AppId(b"\x03" * 32)


class FakeDisk:
    """A file system of ``total`` bytes whose free space the test sets."""

    def __init__(self, total: int, free: int) -> None:
        self.total, self.free = total, free

    def read(self, path: Path) -> DiskSpace:
        return DiskSpace(self.free, self.total)


def test_the_reserve_is_five_percent_within_its_bounds() -> None:
    assert compute_reserve(10 * GIB) == 512 * MIB
    assert compute_reserve(256 * GIB) == MAX_RESERVE_BYTES
    assert compute_reserve(2 * GIB) == 2 * GIB // 20  # 5 %: 102.4 MiB
    assert compute_reserve(1 * GIB) == MIN_RESERVE_BYTES  # 5 % would be 51 MiB
    assert compute_reserve(256 * MIB) == 64 * MIB  # a quarter, and the floor
    assert compute_reserve(64 * MIB) == 16 * MIB  # never above a quarter of a small disk


def test_the_room_a_node_reports_leaves_it_above_twice_its_reserve() -> None:
    """A state the planner sends here must not bring the node to the level at which its
    guard stops apps (``ResourceReport.state_room_bytes``)."""
    assert DiskSpace(1 * GIB, 10 * GIB).get_state_room() == 0  # reserve 512 MiB
    assert DiskSpace(2 * GIB, 10 * GIB).get_state_room() == 1 * GIB
    assert DiskSpace(200 * MIB, 256 * MIB).get_state_room() == 72 * MIB  # reserve 64
    assert DiskSpace(0, 0).get_state_room() == 0


def test_the_writer_is_stopped_not_the_app_that_holds_a_big_state() -> None:
    disk = FakeDisk(total=10 * GIB, free=5 * GIB)  # reserve 512 MiB
    guard = DiskGuard(Path("/unused"), disk.read)
    sizes = [StateSize(WRITER, True, 10 * MIB), StateSize(BIG, True, 3 * GIB),
             StateSize(QUIET, True, MIB)]  # fmt: skip
    assert guard.check(sizes) is None  # room enough: nothing measured yet anyway
    disk.free = 400 * MIB  # the writer filled the disk; BIG did not grow
    sizes = [StateSize(WRITER, True, 4 * GIB), StateSize(BIG, True, 3 * GIB),
             StateSize(QUIET, True, MIB + 100)]  # fmt: skip
    found = guard.check(sizes)
    assert found is not None
    app, hold = found
    assert app == WRITER and guard.is_held(WRITER) and not guard.is_held(BIG)
    assert (hold.free_bytes, hold.reserve_bytes) == (400 * MIB, 512 * MIB)
    assert hold.growth_bytes == 4 * GIB - 10 * MIB and hold.state_bytes == 4 * GIB
    assert "400 MiB free" in hold.describe() and "reserve of 512 MiB" in hold.describe()
    # Stopped, it grows no more: the next pass, still short of room, stops nobody else.
    sizes = [StateSize(WRITER, False, 0), StateSize(BIG, True, 3 * GIB),
             StateSize(QUIET, True, MIB + 200)]  # fmt: skip
    assert guard.check(sizes) is None
    assert guard.is_held(WRITER) and not guard.is_held(QUIET)


def test_a_disk_filled_from_elsewhere_stops_no_app() -> None:
    disk = FakeDisk(total=32 * MIB, free=20 * MIB)
    guard = DiskGuard(Path("/unused"), disk.read)
    guard.check([StateSize(QUIET, True, 4096)])
    disk.free = 0  # a filler file, not an app
    assert guard.check([StateSize(QUIET, True, 8192)]) is None
    assert not guard.is_held(QUIET)


def test_the_hold_ends_with_room_again_or_when_the_app_leaves() -> None:
    disk = FakeDisk(total=10 * GIB, free=5 * GIB)
    guard = DiskGuard(Path("/unused"), disk.read)
    guard.check([StateSize(WRITER, True, 0), StateSize(QUIET, True, 0)])
    disk.free = 100 * MIB
    assert guard.check([StateSize(WRITER, True, GIB), StateSize(QUIET, True, 2 * MIB)]) == (
        WRITER,
        guard.get_hold(WRITER),
    )
    # Another writer while the disk is still short: held too, one per pass.
    found = guard.check([StateSize(WRITER, False, 0), StateSize(QUIET, True, 50 * MIB)])
    assert found is not None and found[0] == QUIET
    disk.free = 900 * MIB  # above the reserve, not yet twice it: still held
    assert guard.check([StateSize(WRITER, False, 0), StateSize(QUIET, False, 0)]) is None
    assert guard.is_held(WRITER) and guard.is_held(QUIET)
    guard.check([StateSize(WRITER, False, 0)])  # QUIET removed here (rm, moved away)
    assert not guard.is_held(QUIET) and guard.is_held(WRITER)
    disk.free = 1024 * MIB + 1
    assert guard.check([StateSize(WRITER, False, 0)]) is None
    assert not guard.is_held(WRITER)


@pytest.mark.parametrize("free_mib", [63, 64])
def test_the_reserve_is_the_line(free_mib: int) -> None:
    disk = FakeDisk(total=256 * MIB, free=200 * MIB)  # reserve 64 MiB
    guard = DiskGuard(Path("/unused"), disk.read)
    guard.check([StateSize(WRITER, True, 0)])
    disk.free = free_mib * MIB
    found = guard.check([StateSize(WRITER, True, 100 * MIB)])
    assert (found is not None) == (free_mib < 64)


def test_the_real_file_system_is_read(tmp_path: Path) -> None:
    space = read_disk_space(tmp_path)
    assert 0 <= space.free_bytes <= space.total_bytes and space.total_bytes > 0


def test_an_app_being_handed_over_is_left_to_its_handover() -> None:
    disk = FakeDisk(total=10 * GIB, free=5 * GIB)
    guard = DiskGuard(Path("/unused"), disk.read)
    guard.check([StateSize(WRITER, True, 0), StateSize(QUIET, True, 0)])
    disk.free = 100 * MIB
    sizes = [StateSize(WRITER, True, GIB), StateSize(QUIET, True, 2 * MIB)]
    found = guard.check(sizes, busy={WRITER})
    assert found is not None and found[0] == QUIET  # the writer is on its way out
    assert not guard.is_held(WRITER)
    guard.release(QUIET)  # could not be stopped: decided again at the next pass
    assert not guard.is_held(QUIET)
