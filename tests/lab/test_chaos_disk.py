"""The full-disk fault's block check (``lab/chaos_disk.py``) on a real store."""

from __future__ import annotations

from pathlib import Path

from edgechain.chain.store.block_store import BlockStore
from edgechain.lab.chaos_disk import find_lost_blocks, keep_logs
from edgechain.types import BlockHash, Slot


def test_blocks_missing_from_the_store_are_found(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    genesis, kept = BlockHash(b"\x01" * 32), BlockHash(b"\x02" * 32)
    with BlockStore(path) as store:
        store.put_genesis(genesis, b"genesis")
        store.put_block(kept, genesis, Slot(1), 3, b"block")
    lost = "03" * 32
    assert find_lost_blocks(path, [kept.hex()]) == []
    assert find_lost_blocks(path, [kept.hex(), lost]) == [lost]
    assert find_lost_blocks(path, []) == []
    # A store that cannot be read keeps nothing.
    assert find_lost_blocks(tmp_path / "missing.db", [kept.hex()]) == [kept.hex()]


def test_the_small_disk_nodes_logs_are_kept_beside_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "node-005"
    data_dir.mkdir()
    (data_dir / "stderr.log").write_text("disk full: stopping\n")
    (data_dir / "watchdog.log").write_text('{"event":"freeze"}\n')
    (data_dir / "chain.db").write_bytes(b"not a log")
    kept = keep_logs(data_dir)
    assert kept == tmp_path / "node-005-logs"
    assert sorted(p.name for p in kept.iterdir()) == ["stderr.log", "watchdog.log"]
    assert (kept / "stderr.log").read_text() == "disk full: stopping\n"
