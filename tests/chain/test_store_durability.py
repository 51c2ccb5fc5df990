"""What each store write survives (``chain/store/connection.py``, DEFAULT_SYNCHRONOUS):
a block's write survives a killed process; the last finality vote (``put_meta``) also
survives a power loss: its transaction runs with ``synchronous=FULL``."""

from __future__ import annotations

import hashlib
from pathlib import Path

from edgechain.chain.store.block_store import BlockStore
from edgechain.types import BlockHash, Slot

GENESIS = BlockHash(hashlib.sha256(b"genesis").digest())
BLOCK = BlockHash(hashlib.sha256(b"a").digest())


def _statements(store: BlockStore) -> list[str]:
    """Every SQL statement the store's connection runs from now on."""
    seen: list[str] = []
    store._db.conn.set_trace_callback(seen.append)
    return seen


def _synchronous(store: BlockStore) -> int:
    return int(store._db.conn.execute("PRAGMA synchronous").fetchone()[0])


def test_blocks_are_written_without_an_fsync_per_commit(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        assert _synchronous(store) == 1  # NORMAL
        seen = _statements(store)
        store.put_genesis(GENESIS, b"genesis-bytes")
        store.put_block(BLOCK, GENESIS, Slot(1), 5, b"block-bytes")
        assert not any("synchronous" in s for s in seen)
        assert "COMMIT" in seen


def test_the_meta_table_is_written_durably_and_the_default_comes_back(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "chain.db") as store:
        seen = _statements(store)
        store.put_meta("last_vote", b"vote")
        begin = seen.index("BEGIN IMMEDIATE")
        assert seen[begin - 1] == "PRAGMA synchronous = FULL"
        assert seen.index("COMMIT") < seen.index("PRAGMA synchronous = NORMAL")
        assert _synchronous(store) == 1
    with BlockStore(tmp_path / "chain.db") as store:
        assert store.get_meta("last_vote") == b"vote"
