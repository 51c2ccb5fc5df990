"""``/status`` ``skip_run``: the skip blocks in a row at the head (node/queries.py)."""

from __future__ import annotations

from edgechain.chain.model import AnyBlock, Block, SkipBlock
from edgechain.chain.validator_set import NO_EXCLUSION
from edgechain.node.queries import get_skip_run
from edgechain.types import BlockHash, NodeId, Signature, Slot


def _hash(slot: int) -> BlockHash:
    return BlockHash(slot.to_bytes(32, "big"))


def _full(slot: int) -> Block:
    return Block(
        _hash(slot - 1), Slot(slot), 0, NodeId(bytes(32)), 0, 1, b"", b"", bytes(32), (), (),
        (), (), (), Signature(b""), b"", Signature(b""),
    )  # fmt: skip


def _skip(slot: int, parent: int) -> SkipBlock:
    return SkipBlock(_hash(parent), Slot(slot), NO_EXCLUSION, b"\x03", Signature(b""))


def test_the_skip_blocks_at_the_head_are_counted_back_to_the_last_full_block() -> None:
    blocks: dict[BlockHash, AnyBlock] = {_hash(5): _full(5)}
    assert get_skip_run(blocks, _hash(5)) is None  # a full block at the head
    assert get_skip_run(blocks, None) is None  # no head yet
    blocks[_hash(7)] = _skip(7, 5)  # slot 6 empty: neither block nor skip
    blocks[_hash(8)] = _skip(8, 7)
    blocks[_hash(11)] = _skip(11, 8)
    assert get_skip_run(blocks, _hash(11)) == {"skip_blocks": 3, "since_slot": 7}
    # A run that reaches below what memory holds (the genesis) counts what it holds.
    assert get_skip_run({_hash(2): _skip(2, 0)}, _hash(2)) == {"skip_blocks": 1, "since_slot": 2}
