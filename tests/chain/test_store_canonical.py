"""The store's ``canonical`` and ``state_snapshot`` tables (schema 3): round trips,
refusals, replace semantics, and the migration of schema-2 and schema-1 files, which
backfills ``canonical`` with the stored head's ancestors."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from edgechain.chain.store.app_history import AppEventRecord
from edgechain.chain.store.block_store import BlockStore
from edgechain.chain.store.canonical import StateSnapshot
from edgechain.chain.store.schema import APPLICATION_ID, MAGIC, SCHEMA_VERSION
from edgechain.errors import StoreError
from edgechain.types import AppId, BlockHash, Slot


def h(name: str) -> BlockHash:
    return BlockHash(hashlib.sha256(name.encode()).digest())


GENESIS = h("genesis")


def encoded(block: BlockHash) -> bytes:
    """Opaque block bytes derived from the hash, so any mix-up shows."""
    return hashlib.shake_256(block).digest(64)


# genesis <- a (1) <- b (2) <- d (4) <- f (5);  a <- c (3);  a <- e (2)
TREE = [("a", "genesis", 1), ("b", "a", 2), ("c", "a", 3), ("e", "a", 2), ("d", "b", 4)]
TREE += [("f", "d", 5)]


def fill(store: BlockStore) -> None:
    store.put_genesis(GENESIS, b"genesis-bytes")
    for name, parent, slot in TREE:
        store.put_block(h(name), h(parent), Slot(slot), 1, encoded(h(name)))


def chain(*names: str) -> list[tuple[Slot, BlockHash]]:
    slots = {name: slot for name, _, slot in TREE}
    return [(Slot(slots[name]), h(name)) for name in names]


def canonical(store: BlockStore) -> dict[int, BlockHash]:
    """Every canonical row, through the public API."""
    return {
        slot: block
        for slot in range(0, 10)
        if (block := store.get_canonical_hash(slot)) is not None
    }


# -- canonical -------------------------------------------------------------------


def test_canonical_round_trip_by_slot_with_limit(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with BlockStore(path) as store:
        fill(store)
        assert store.get_latest_canonical() is None
        assert store.get_canonical_after(0, 10) == []
        # Two stretches, as two finality advances write them.
        store.put_canonical(chain("a"))
        store.put_canonical(chain("b", "d"))
        assert store.get_latest_canonical() == (4, h("d"))
    with BlockStore(path) as store:  # durable
        everything = [(h(name), encoded(h(name))) for name in ("a", "b", "d")]
        assert store.get_canonical_after(0, 10) == everything
        assert store.get_canonical_after(0, 2) == everything[:2]
        assert store.get_canonical_after(1, 1) == everything[1:2]
        assert store.get_canonical_after(2, 10) == everything[2:]  # past the skip slot 3
        assert store.get_canonical_after(4, 10) == []
        assert store.get_canonical_after(0, 0) == []
        assert canonical(store) == {1: h("a"), 2: h("b"), 4: h("d")}
        assert store.get_canonical_hash(3) is None
        assert store.get_latest_canonical() == (4, h("d"))
        result = store.get_canonical_after(0, 1)[0]
        assert type(result[0]) is bytes and type(result[1]) is bytes
        with pytest.raises(StoreError, match="negative limit"):
            store.get_canonical_after(0, -1)


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([(Slot(1), h("a")), (Slot(2), h("missing"))], "not a stored block"),
        ([(Slot(1), h("a")), (Slot(3), h("b"))], "stored at slot 2, not 3"),
        ([(Slot(1), h("a")), (Slot(4), h("d"))], "not the child of"),  # b left out
        ([(Slot(2), h("b")), (Slot(1), h("a"))], "not the child of"),  # newest first
        ([(Slot(1), h("a")), (Slot(3), h("c")), (Slot(4), h("d"))], "not the child of"),
        ([(Slot(1), h("a")), (Slot(2), BlockHash(b"\x01" * 31))], "32 bytes"),
        ([(Slot(0), GENESIS)], "not a stored block"),
    ],
    ids=["unknown", "wrong-slot", "gap", "reversed", "side-fork", "short-hash", "genesis"],
)
def test_a_bad_entry_refuses_the_whole_stretch(
    tmp_path: Path, entries: list[tuple[Slot, BlockHash]], match: str
) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        fill(store)
        store.put_canonical(chain("a"))
        with pytest.raises(StoreError, match=match):
            store.put_canonical(entries)
        assert canonical(store) == {1: h("a")}, "a refused stretch writes nothing"
        store.put_canonical([])
        assert canonical(store) == {1: h("a")}


def test_a_stretch_replaces_the_slots_it_covers(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        fill(store)
        store.put_canonical(chain("a", "e"))
        store.put_canonical(chain("b"))  # the same slot, another block
        assert canonical(store) == {1: h("a"), 2: h("b")}
        # A row on a side fork (slot 3, as a backfilled head that was reorganised away
        # leaves) inside the stretch's range is dropped: slot 3 is a skip slot of b..d.
        store.put_canonical(chain("c"))
        assert canonical(store) == {1: h("a"), 3: h("c")}
        store.put_canonical(chain("b", "d"))
        assert canonical(store) == {1: h("a"), 2: h("b"), 4: h("d")}
        # Writing an older stretch again (a replay) keeps the later rows.
        store.put_canonical(chain("a", "b"))
        store.put_canonical(chain("a", "b", "d"))
        assert canonical(store) == {1: h("a"), 2: h("b"), 4: h("d")}
        store.put_canonical(chain("f"))
        assert store.get_latest_canonical() == (5, h("f"))


# -- state snapshot ----------------------------------------------------------------


def test_snapshot_round_trip_and_replace(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    with BlockStore(path) as store:
        fill(store)
        assert store.get_state_snapshot() is None
        store.put_state_snapshot(h("b"), Slot(2), b"state-at-b")
        assert store.get_state_snapshot() == StateSnapshot(h("b"), Slot(2), b"state-at-b")
        # Written with the canonical stretch it belongs to, as at a finality advance.
        store.put_canonical(chain("a", "b", "d"))
        store.put_state_snapshot(h("d"), Slot(4), b"\x00" * 100_000)
    with BlockStore(path) as store:
        snapshot = store.get_state_snapshot()
        assert snapshot == StateSnapshot(h("d"), Slot(4), b"\x00" * 100_000)
        assert snapshot is not None and type(snapshot.encoded) is bytes
        store.put_state_snapshot(GENESIS, Slot(0), b"")  # the genesis is stored too
        assert store.get_state_snapshot() == StateSnapshot(GENESIS, Slot(0), b"")


@pytest.mark.parametrize(
    ("block", "slot", "match"),
    [
        (h("missing"), 3, "not a stored block"),
        (h("b"), 3, "stored at slot 2, not 3"),
        (GENESIS, 1, "stored at slot 0, not 1"),
        (BlockHash(b"\x02" * 33), 2, "32 bytes"),
    ],
    ids=["unknown", "wrong-slot", "genesis-wrong-slot", "long-hash"],
)
def test_a_bad_snapshot_is_refused(tmp_path: Path, block: BlockHash, slot: int, match: str) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        fill(store)
        store.put_state_snapshot(h("a"), Slot(1), b"kept")
        with pytest.raises(StoreError, match=match):
            store.put_state_snapshot(block, Slot(slot), b"refused")
        assert store.get_state_snapshot() == StateSnapshot(h("a"), Slot(1), b"kept")


# -- migration ---------------------------------------------------------------------


_SCHEMA_1 = (
    "CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE genesis (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " hash BLOB NOT NULL, encoded BLOB NOT NULL)",
    "CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 0), hash BLOB NOT NULL)",
    "CREATE TABLE blocks (hash BLOB PRIMARY KEY, parent BLOB NOT NULL,"
    " slot INTEGER NOT NULL, weight INTEGER NOT NULL, encoded BLOB NOT NULL)",
    "CREATE INDEX blocks_by_slot ON blocks (slot, hash)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
)

_SCHEMA_2 = (
    *_SCHEMA_1,
    "CREATE TABLE app_history (block BLOB NOT NULL, seq INTEGER NOT NULL,"
    " app BLOB NOT NULL, slot INTEGER NOT NULL, kind TEXT NOT NULL, node BLOB,"
    " origin BLOB, signer BLOB, version INTEGER, PRIMARY KEY (block, seq))",
    "CREATE INDEX app_history_by_app ON app_history (app, slot, seq)",
)


def make_old_store(
    path: Path, version: int, blocks: list[tuple[str, str, int]], head: str | None
) -> None:
    """A store file as schema ``version`` (1 or 2) wrote it, made without BlockStore."""
    conn = sqlite3.connect(path)
    with conn:
        for statement in {1: _SCHEMA_1, 2: _SCHEMA_2}[version]:
            conn.execute(statement)
        conn.executemany(
            "INSERT INTO store_info (key, value) VALUES (?, ?)",
            [("magic", MAGIC), ("schema_version", str(version))],
        )
        conn.execute("INSERT INTO genesis VALUES (0, ?, ?)", (GENESIS, b"genesis-bytes"))
        conn.executemany(
            "INSERT INTO blocks VALUES (?, ?, ?, 1, ?)",
            [(h(name), h(parent), slot, encoded(h(name))) for name, parent, slot in blocks],
        )
        if head is not None:
            conn.execute("INSERT INTO head VALUES (0, ?)", (h(head),))
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {version}")
    conn.close()


def assert_current_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    row = conn.execute("SELECT value FROM store_info WHERE key = 'schema_version'")
    assert row.fetchone() == (str(SCHEMA_VERSION),)
    conn.close()


@pytest.mark.parametrize("version", [1, 2])
def test_migration_backfills_the_heads_ancestors_only(tmp_path: Path, version: int) -> None:
    path = tmp_path / "chain.db"
    make_old_store(path, version, TREE, head="d")
    with BlockStore(path) as store:
        # d's chain: a, b, d; not its descendant f, nor the side forks c and e.
        assert canonical(store) == {1: h("a"), 2: h("b"), 4: h("d")}
        assert store.get_canonical_after(1, 10) == [
            (h("b"), encoded(h("b"))),
            (h("d"), encoded(h("d"))),
        ]
        assert store.get_state_snapshot() is None
        assert store.count_blocks() == len(TREE) and store.get_head() == h("d")
        store.check_integrity()
        # The new tables take writes; finality replaces the backfilled rows.
        store.put_state_snapshot(h("b"), Slot(2), b"state")
        store.put_canonical(chain("f"))
        app = AppId(h("web"))
        store.put_app_events([AppEventRecord(app, h("a"), 0, Slot(1), "submit")])
    assert_current_schema(path)
    with BlockStore(path) as store:  # opened again: nothing to migrate, nothing lost
        assert canonical(store) == {1: h("a"), 2: h("b"), 4: h("d"), 5: h("f")}
        assert store.get_state_snapshot() == StateSnapshot(h("b"), Slot(2), b"state")
        assert len(store.get_app_events(app)) == 1


@pytest.mark.parametrize("head", [None, "genesis"])
def test_migration_without_a_head_block_backfills_nothing(tmp_path: Path, head: str | None) -> None:
    path = tmp_path / "chain.db"
    make_old_store(path, 2, TREE, head=head)
    with BlockStore(path) as store:
        assert store.get_latest_canonical() is None
        assert store.get_canonical_after(0, 10) == []
    assert_current_schema(path)


def test_migration_backfills_a_long_chain(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    # Every third slot a skip slot, and a side fork off every block.
    main: list[tuple[str, str, int]] = []
    for slot in (s for s in range(1, 3001) if s % 3 != 0):
        main.append((str(slot), main[-1][0] if main else "genesis", slot))
    forks = [(f"fork-{name}", name, slot + 1) for name, _, slot in main]
    make_old_store(path, 2, main + forks, head=main[-1][0])
    with BlockStore(path) as store:
        rows = store.get_canonical_after(0, 10_000)
        assert [block for block, _ in rows] == [h(name) for name, _, _ in main]
        assert store.get_latest_canonical() == (main[-1][2], h(main[-1][0]))
