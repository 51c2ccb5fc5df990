"""node/relayed_blocks.py: another origin's gossip copy of a block stops at a node
that relayed one and holds the block, and only then."""

from __future__ import annotations

from edgechain.node.relayed_blocks import RelayedBlocks
from edgechain.types import BlockHash

SKIP = BlockHash(b"\x01" * 32)
OTHER = BlockHash(b"\x02" * 32)


def test_a_second_origins_copy_of_an_accepted_block_stops() -> None:
    relayed = RelayedBlocks()
    assert not relayed.is_repeat(SKIP, accepted=False)  # the first copy: relayed, taken
    assert relayed.is_repeat(SKIP, accepted=True)  # another assembler's: dropped
    assert relayed.is_repeat(SKIP, accepted=True)
    assert not relayed.is_repeat(OTHER, accepted=True)  # never relayed by gossip yet
    assert relayed.dropped == 2


def test_a_copy_after_a_refused_one_is_still_relayed() -> None:
    """A hostile assembler's copy came first and failed its checks: the block is not
    held, so an honest copy of the same hash is taken and relayed."""
    relayed = RelayedBlocks()
    assert not relayed.is_repeat(SKIP, accepted=False)
    assert not relayed.is_repeat(SKIP, accepted=False)
    assert relayed.dropped == 0


def test_only_the_latest_hashes_are_kept() -> None:
    relayed = RelayedBlocks(limit=2)
    hashes = [BlockHash(bytes([i]) * 32) for i in range(3)]
    for block_hash in hashes:
        relayed.is_repeat(block_hash, accepted=False)
    assert not relayed.is_repeat(hashes[0], accepted=True)  # forgotten: relayed again
    assert relayed.is_repeat(hashes[2], accepted=True)
