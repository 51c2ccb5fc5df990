"""The block store on a full disk: ``StoreFullError``, nothing half-written, nothing lost.

Two ways to fill it: SQLite's ``PRAGMA max_page_count`` (SQLite then reports
``SQLITE_FULL`` exactly as for ``ENOSPC``; runs anywhere) and, as root with loop
devices, a real 8 MiB ext4 file system filled to the last block (``lab/small_disk.py``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgechain.chain.store.block_store import BlockStore, load_fork_choice
from edgechain.errors import LocalError, StoreError, StoreFullError
from edgechain.lab import small_disk
from edgechain.types import BlockHash, Slot

BLOCK_BYTES = 3000
MAX_BLOCKS = 5000


def h(name: str) -> BlockHash:
    return BlockHash(hashlib.sha256(name.encode()).digest())


GENESIS = h("genesis")


def body(block: BlockHash) -> bytes:
    return hashlib.shake_256(block).digest(BLOCK_BYTES)


def limit_pages(store: BlockStore, extra_pages: int) -> None:
    """Let the database grow by ``extra_pages`` at most (0: not at all)."""
    conn = store._db.conn  # the pragma is per connection; nothing public sets it
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    conn.execute(f"PRAGMA max_page_count = {int(pages) + extra_pages}")


def lift_limit(store: BlockStore) -> None:
    store._db.conn.execute("PRAGMA max_page_count = 4294967294")


def put_until_full(store: BlockStore, first_slot: int = 1) -> tuple[list[BlockHash], BlockHash]:
    """A chain of blocks (each then the head) until a put raises StoreFullError; the
    blocks stored and the one refused."""
    head = store.get_head()
    parent = head if head is not None else GENESIS
    stored: list[BlockHash] = []
    for slot in range(first_slot, first_slot + MAX_BLOCKS):
        block = h(f"block-{slot}")
        try:
            store.put_block(block, parent, Slot(slot), 1, body(block))
        except StoreFullError:
            return stored, block
        store.set_head(block)
        stored.append(block)
        parent = block
    raise AssertionError(f"the store took {MAX_BLOCKS} blocks without filling up")


def test_full_database_raises_store_full_error(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        store.put_genesis(GENESIS, b"genesis")
        limit_pages(store, 40)
        stored, refused = put_until_full(store)
        assert stored, "the limit left room for no block"
        # Nothing of the refused block; every block before it, and the head, intact.
        assert not store.has_block(refused)
        assert store.get_head() == stored[-1]
        assert [r.hash for r in store.iter_blocks()] == stored
        assert all(store.get_block(b) == body(b) for b in stored)
        assert load_fork_choice(store).get_head() == stored[-1]
        # No transaction left open by the failed write: the next one works once there
        # is room (a leftover would fail as "cannot start a transaction").
        lift_limit(store)
        parent = stored[-1]
        slot = len(stored) + 1
        assert store.put_block(refused, parent, Slot(slot), 1, body(refused))
        store.set_head(refused)
    with BlockStore(tmp_path / "chain.db") as store:
        assert [r.hash for r in store.iter_blocks()] == [*stored, refused]
        assert store.get_head() == refused
        store.check_integrity()


def test_store_full_error_is_a_local_store_error() -> None:
    assert issubclass(StoreFullError, StoreError)
    assert issubclass(StoreFullError, LocalError)


@pytest.fixture
def full_store(tmp_path: Path) -> Iterator[tuple[BlockStore, list[BlockHash]]]:
    store = BlockStore(tmp_path / "chain.db")
    store.put_genesis(GENESIS, b"genesis")
    limit_pages(store, 20)
    stored, _ = put_until_full(store)
    limit_pages(store, 0)
    try:
        yield store, stored
    finally:
        store.close()


def test_meta_and_head_writes_on_a_full_database(
    full_store: tuple[BlockStore, list[BlockHash]],
) -> None:
    store, stored = full_store
    big = bytes(64 * 1024)
    with pytest.raises(StoreFullError, match="disk full"):
        store.put_meta("big", big)
    assert store.get_meta("big") is None
    store.set_head(stored[0])  # a head update needs no new page
    assert store.get_head() == stored[0]


# --- a real full file system (root, loop devices) ---------------------------------------

needs_small_disk = pytest.mark.skipif(
    os.geteuid() != 0 or not small_disk.is_small_disk_available(),
    reason="a small disk needs root and loop devices (mkfs.ext4, mount)",
)


@needs_small_disk
def test_full_file_system(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    small_disk.mount_small_disk(disk, 8 * 2**20)
    try:
        path = disk / "chain.db"
        with BlockStore(path) as store:
            store.put_genesis(GENESIS, b"genesis")
            small_disk.fill(disk)
            # At most one block shows free that no write can take (ext4's reservations
            # settle at the sync: 1 fill in about 70 here); the writes below fail alike.
            assert small_disk.get_free_bytes(disk) <= small_disk.BLOCK_SIZE
            stored, refused = put_until_full(store)
            assert not store.has_block(refused)
        # Reopened on the still full disk: it reads, and refuses writes the same way.
        with BlockStore(path) as store:
            assert [r.hash for r in store.iter_blocks()] == stored
            parent = stored[-1] if stored else GENESIS
            with pytest.raises(StoreFullError):
                store.put_block(refused, parent, Slot(len(stored) + 1), 1, body(refused))
        # A new store cannot even be created there.
        with pytest.raises(StoreFullError):
            BlockStore(disk / "other.db")
        small_disk.free(disk)
        with BlockStore(path) as store:
            assert store.put_block(refused, parent, Slot(len(stored) + 1), 1, body(refused))
            assert [r.hash for r in store.iter_blocks()] == [*stored, refused]
            store.check_integrity()
    finally:
        small_disk.unmount(disk)
