"""``lab/small_disk.py``: a small file system to fill and free (the mounts need root)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgechain.lab import small_disk
from edgechain.lab.small_disk import SmallDiskError

needs_small_disk = pytest.mark.skipif(
    os.geteuid() != 0 or not small_disk.is_small_disk_available(),
    reason="a small disk needs root and loop devices (mkfs.ext4, mount)",
)


def test_refuses_a_size_too_small(tmp_path: Path) -> None:
    with pytest.raises(SmallDiskError, match="at least"):
        small_disk.mount_small_disk(tmp_path / "disk", 1024 * 1024)


def test_fill_and_free_need_a_small_disk(tmp_path: Path) -> None:
    with pytest.raises(SmallDiskError, match="not a small disk"):
        small_disk.fill(tmp_path)
    with pytest.raises(SmallDiskError, match="not a small disk"):
        small_disk.free(tmp_path)
    small_disk.unmount(tmp_path)  # not one: nothing to do
    assert tmp_path.is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="checks the error a non-root user gets")
def test_refuses_without_root(tmp_path: Path) -> None:
    with pytest.raises(SmallDiskError, match="root"):
        small_disk.mount_small_disk(tmp_path / "disk", 8 * 2**20)


@needs_small_disk
def test_mount_fill_free_unmount(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    small_disk.mount_small_disk(disk, 8 * 2**20)
    try:
        assert small_disk.is_small_disk(disk)
        assert list(disk.iterdir()) == []
        with pytest.raises(SmallDiskError, match="already a mount point"):
            small_disk.mount_small_disk(disk, 8 * 2**20)
        room = small_disk.get_free_bytes(disk)
        assert 3 * 2**20 < room < 8 * 2**20
        (disk / "data").write_bytes(b"x" * 10_000)
        filled = small_disk.fill(disk)
        assert small_disk.get_free_bytes(disk) == 0
        with pytest.raises(OSError, match="No space left"):
            (disk / "more").write_bytes(b"y" * 10_000)
        assert small_disk.free(disk) == filled
        assert small_disk.get_free_bytes(disk) > 3 * 2**20
        assert (disk / "data").read_bytes() == b"x" * 10_000
        # Leaving some room.
        small_disk.fill(disk, leave_bytes=2**20)
        assert 2**20 - 2**16 <= small_disk.get_free_bytes(disk) <= 2**20
    finally:
        small_disk.unmount(disk)
    assert not os.path.ismount(disk)
    assert not small_disk.get_image_path(disk).exists()


@needs_small_disk
def test_refuses_a_directory_in_use(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "chain.db").write_bytes(b"")
    with pytest.raises(SmallDiskError, match="not empty"):
        small_disk.mount_small_disk(disk, 8 * 2**20)
    assert not os.path.ismount(disk)
