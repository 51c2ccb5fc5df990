"""``node/archive.StoreArchive``: the app manager's look-up of finalized blocks that
memory no longer holds, from a real store's canonical index."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgechain.chain.encoding import compute_block_hash, encode_block
from edgechain.chain.model import Block, PlanAction, PlanEntry
from edgechain.chain.store.block_store import BlockStore
from edgechain.errors import StoreCorruptError, StoreError
from edgechain.node.archive import StoreArchive
from edgechain.testing import make_identity
from edgechain.types import AppId, BlockHash, NodeId, Signature, Slot

ME = make_identity(1)
GENESIS = BlockHash(bytes(32))


def _block(parent: BlockHash, slot: int, plan: tuple[PlanEntry, ...] = ()) -> Block:
    return Block(
        parent, Slot(slot), 0, ME.node, 0, 1, bytes(100), bytes(100), bytes(32), (), plan, (), (),
        (), Signature(bytes(96)), b"", Signature(bytes(96)),
    )  # fmt: skip


def test_the_finalized_block_at_a_slot_comes_back_decoded(tmp_path: Path) -> None:
    entry = PlanEntry(PlanAction.PLACE, AppId(b"\x01" * 32), NodeId(b""), ME.node)
    first = _block(GENESIS, 1, (entry,))
    second = _block(compute_block_hash(first), 3)
    with BlockStore(tmp_path / "chain.db") as store:
        store.put_genesis(GENESIS, b"genesis")
        for block in (first, second):
            block_hash = compute_block_hash(block)
            store.put_block(block_hash, block.parent, block.slot, 1, encode_block(block))
        store.put_canonical([(Slot(1), compute_block_hash(first))])

        failures: list[StoreError] = []
        archive = StoreArchive(store, failures.append)
        first_hash, second_hash = compute_block_hash(first), compute_block_hash(second)
        assert archive.get_block_at(Slot(1)) == (first_hash, first)
        assert archive.get_finalized_block(first_hash) == first
        assert archive.get_block_at(Slot(2)) is None  # a skip, or never finalized
        # Stored, not (yet) canonical: not answered for.
        assert archive.get_block_at(Slot(3)) is None
        assert archive.get_finalized_block(second_hash) is None
        assert archive.get_finalized_block(BlockHash(b"\x05" * 32)) is None

        assert failures == []

        # Our own store gone bad is our error, not a missing block: raised, and handed
        # to the node (which stops) with what to do about it.
        store.put_block(BlockHash(b"\x07" * 32), GENESIS, Slot(4), 1, encode_block(second))
        store.put_canonical([(Slot(4), BlockHash(b"\x07" * 32))])
        with pytest.raises(StoreCorruptError, match="slot 4 does not hash") as raised:
            archive.get_block_at(Slot(4))
        assert failures == [raised.value]
        assert "move" in str(raised.value) and "aside" in str(raised.value)
        with pytest.raises(StoreCorruptError, match="slot 4 does not hash"):
            archive.get_finalized_block(BlockHash(b"\x07" * 32))
        store.put_block(BlockHash(b"\x08" * 32), GENESIS, Slot(5), 1, b"\xff not a block")
        store.put_canonical([(Slot(5), BlockHash(b"\x08" * 32))])
        with pytest.raises(StoreCorruptError, match="slot 5 is unreadable"):
            archive.get_block_at(Slot(5))
        assert len(failures) == 3

        # A read SQLite refuses goes the same way.
        store.close()
        with pytest.raises(StoreError, match="closed"):
            archive.get_block_at(Slot(1))
        assert len(failures) == 4 and not isinstance(failures[-1], StoreCorruptError)
