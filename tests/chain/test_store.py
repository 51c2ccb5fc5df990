"""Block store: roundtrip, idempotency, reopen and refusal of files that are not ours."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from edgechain.chain.forkchoice import ForkChoice
from edgechain.chain.store.block_store import BlockStore, load_fork_choice
from edgechain.chain.store.blocks import BlockRecord, GenesisRecord
from edgechain.errors import LocalError, StoreCorruptError, StoreError
from edgechain.types import BlockHash, Slot


def h(name: str) -> BlockHash:
    return BlockHash(hashlib.sha256(name.encode()).digest())


GENESIS = h("genesis")


def encoded(block: BlockHash, size: int = 100) -> bytes:
    """Opaque block bytes derived from the hash, so any mix-up shows."""
    return hashlib.shake_256(block).digest(size)


def fill(store: BlockStore) -> None:
    """genesis <- a (1) <- b (2) <- d (4); a <- c (3): a fork at a."""
    store.put_genesis(GENESIS, b"genesis-bytes")
    store.put_block(h("a"), GENESIS, Slot(1), 5, encoded(h("a")))
    store.put_block(h("b"), h("a"), Slot(2), 3, encoded(h("b"), 70_000))
    store.put_block(h("c"), h("a"), Slot(3), 4, encoded(h("c")))
    store.put_block(h("d"), h("b"), Slot(4), 3, encoded(h("d"), 0))
    store.set_head(h("d"))


def test_roundtrip(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        assert store.get_genesis() is None
        assert store.get_head() is None
        fill(store)
        assert store.get_genesis() == GenesisRecord(GENESIS, b"genesis-bytes")
        assert store.get_block(h("b")) == encoded(h("b"), 70_000)
        assert store.get_block(h("d")) == b""
        assert store.get_block(h("missing")) is None
        assert store.has_block(h("c"))
        assert not store.has_block(h("missing"))
        assert store.get_head() == h("d")
        assert store.get_record(h("c")) == BlockRecord(h("c"), h("a"), Slot(3), 4)
        assert store.count_blocks() == 4
        store.put_meta("node-id", b"\x01\x02")
        store.put_meta("node-id", b"\x03")
        assert store.get_meta("node-id") == b"\x03"
        assert store.get_meta("absent") is None
        store.check_integrity()


def test_iter_blocks_puts_parents_first_and_rebuilds_fork_choice(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        fill(store)
        records = list(store.iter_blocks())
        assert [r.hash for r in records] == [h("a"), h("b"), h("c"), h("d")]
        tree = load_fork_choice(store)
    assert isinstance(tree, ForkChoice)
    assert len(tree) == 5
    assert tree.get_head() == h("d")  # 5+3+3 = 11 beats 5+4 = 9
    assert tree.get_weight(h("c")) == 9


def test_iter_blocks_pages_through_many_blocks(tmp_path: Path) -> None:
    # More than one batch, with several blocks per slot to exercise the (slot, hash)
    # keyset, and a write in the middle of the iteration.
    with BlockStore(tmp_path / "chain.db") as store:
        store.put_genesis(GENESIS, b"")
        parent = GENESIS
        for slot in range(1, 401):
            for sibling in range(3):
                block = h(f"{slot}/{sibling}")
                store.put_block(block, parent, Slot(slot), 1 + sibling, b"x")
            parent = h(f"{slot}/0")
        seen = []
        for record in store.iter_blocks():
            seen.append(record)
            if len(seen) == 700:
                store.put_meta("written-while-iterating", b"yes")
        assert len(seen) == 1200
        assert seen == sorted(seen, key=lambda r: (r.slot, r.hash))
        tree = load_fork_choice(store)
        assert tree.get_slot(tree.get_head()) == 400


def test_puts_are_idempotent(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        fill(store)
        store.put_genesis(GENESIS, b"genesis-bytes")
        assert not store.put_block(h("b"), h("a"), Slot(2), 3, encoded(h("b"), 70_000))
        # Same block with a bigger attestation: the first write wins.
        assert not store.put_block(h("b"), h("a"), Slot(2), 5, b"other")
        assert store.get_block(h("b")) == encoded(h("b"), 70_000)
        assert store.get_record(h("b")) == BlockRecord(h("b"), h("a"), Slot(2), 3)
        assert store.count_blocks() == 4


def test_rejects_inconsistent_writes(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        with pytest.raises(StoreError, match="not stored"):
            store.put_block(h("a"), GENESIS, Slot(1), 1, b"")  # no genesis yet
        fill(store)
        with pytest.raises(StoreError, match="genesis"):
            store.put_genesis(h("other-genesis"), b"")
        with pytest.raises(StoreError, match="not stored"):
            store.put_block(h("orphan"), h("missing"), Slot(9), 1, b"")
        with pytest.raises(StoreError, match="slot"):
            store.put_block(h("early"), h("d"), Slot(4), 1, b"")
        with pytest.raises(StoreError, match="different parent"):
            store.put_block(h("d"), h("c"), Slot(4), 3, b"")
        with pytest.raises(StoreError, match="32 bytes"):
            store.put_block(BlockHash(b"short"), h("d"), Slot(5), 1, b"")
        with pytest.raises(StoreError, match="negative"):
            store.put_block(h("e"), h("d"), Slot(5), -1, b"")
        with pytest.raises(StoreError, match="not a stored block"):
            store.set_head(h("missing"))
        store.set_head(GENESIS)
        assert store.get_head() == GENESIS
        assert store.count_blocks() == 4, "failed puts left nothing behind"


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with BlockStore(path) as store:
        fill(store)
        store.put_meta("k", b"v")
    with BlockStore(path) as store:
        assert store.get_genesis() == GenesisRecord(GENESIS, b"genesis-bytes")
        assert store.get_head() == h("d")
        assert store.get_block(h("b")) == encoded(h("b"), 70_000)
        assert store.get_meta("k") == b"v"
        assert [r.hash for r in store.iter_blocks()] == [h("a"), h("b"), h("c"), h("d")]
        journal_mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
        assert journal_mode == "wal"


def test_closed_store_raises(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "chain.db")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.get_head()


def test_load_fork_choice_needs_genesis(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store, pytest.raises(StoreError, match="genesis"):
        load_fork_choice(store)


# -- files that are not ours -------------------------------------------------------


def assert_refused(path: Path, match: str) -> None:
    before = path.read_bytes()
    with pytest.raises(StoreError, match=match) as info:
        BlockStore(path)
    assert isinstance(info.value, LocalError)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before, "a refused file must be left untouched"


def test_garbage_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    path.write_bytes(hashlib.shake_256(b"noise").digest(8192))
    assert_refused(path, "not a database")


def test_corrupt_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with BlockStore(path) as store:
        fill(store)
    data = bytearray(path.read_bytes())
    data[0:16] = b"definitely-not!\x00"  # the SQLite magic string
    path.write_bytes(bytes(data))
    assert_refused(path, "not a database")


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE blocks (hash BLOB, data BLOB)")
        conn.execute("INSERT INTO blocks VALUES (x'00', x'01')")
    conn.close()
    assert_refused(path, "not an edgechain block store")


def test_foreign_database_with_our_table_names_is_refused(tmp_path: Path) -> None:
    # Same table name as ours but no application_id: still not ours.
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO store_info VALUES ('magic', 'edgechain-blockstore')")
    conn.close()
    assert_refused(path, "application_id")


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with BlockStore(path) as store:
        fill(store)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    assert_refused(path, "schema version 99")


def test_missing_magic_row_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with BlockStore(path) as store:
        fill(store)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM store_info WHERE key = 'magic'")
    conn.close()
    assert_refused(path, "magic")


PAGE = 4096


def fill_many_pages(path: Path) -> None:
    """A closed store of many pages: ``fill`` and 35 blocks of 5000 bytes."""
    with BlockStore(path) as store:
        fill(store)
        for slot in range(5, 40):
            parent = h("d") if slot == 5 else h(str(slot - 1))
            store.put_block(h(str(slot)), parent, Slot(slot), 1, encoded(h(str(slot)), 5000))


@pytest.mark.parametrize("cut", ["1", "100", "4095", "half", "page", "half-page", "last-byte"])
def test_truncated_file_is_refused(tmp_path: Path, cut: str) -> None:
    path = tmp_path / "chain.db"
    fill_many_pages(path)
    # Closing the last connection checkpoints the WAL into the main file.
    assert not (tmp_path / "chain.db-wal").exists()
    data = path.read_bytes()
    assert len(data) % PAGE == 0
    keep = {
        "half": len(data) // PAGE // 2 * PAGE,  # on a page boundary
        "page": len(data) - PAGE,  # the last page, on a page boundary
        "half-page": len(data) - PAGE // 2,
        "last-byte": len(data) - 1,
    }.get(cut) or int(cut)
    path.write_bytes(data[:keep])
    assert_refused(path, "truncated|malformed|not a database")


@pytest.mark.parametrize("where", ["middle", "last"])
def test_a_page_damaged_inside_the_file_is_refused_at_open(tmp_path: Path, where: str) -> None:
    # Header, identity and schema intact: only a page of block data garbled, as a bad
    # sector or an SD card leaves it. Found at open (quick_check), not at the read that
    # reaches it hours later; the message says what the operator does.
    path = tmp_path / "chain.db"
    fill_many_pages(path)
    data = bytearray(path.read_bytes())
    pages = len(data) // PAGE
    page = pages // 2 if where == "middle" else pages - 1
    data[page * PAGE : (page + 1) * PAGE] = hashlib.shake_256(b"garbled").digest(PAGE)
    path.write_bytes(bytes(data))
    before = path.read_bytes()
    with pytest.raises(StoreCorruptError) as info:
        BlockStore(path)
    message = str(info.value)
    assert str(path) in message and "damaged" in message
    assert "aside" in message and "syncs the chain from its peers" in message
    assert path.read_bytes() == before


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"cannot open|unable to open"):
        BlockStore(tmp_path / "no" / "such" / "dir" / "chain.db")
