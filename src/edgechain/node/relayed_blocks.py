"""Which blocks this node has already relayed by gossip, so that another origin's copy
of one goes no further.

Gossip de-duplicates by message id, the hash of the origin's envelope; the same block
published by several origins is several messages. Every committee member that
assembles a skip block publishes its own (the aggregates differ, the block hash does
not), so a skip slot flooded the network up to a committee's worth of times, exactly
when it was already behind (issue 13: at 100 nodes each block reached a node about ten
times). A copy is dropped only when both hold: we relayed a gossip copy of that block
before, and we accepted the block. If the first copy failed its checks (a hostile
assembler's bad aggregate), the block is not accepted, so an honest copy after it is
still taken and relayed; and a block first received directly (the next slot's duties
get it so) is still relayed once.
"""

from __future__ import annotations

from collections import OrderedDict

from edgechain.types import BlockHash

RELAYED_BLOCKS_KEPT = 256
"""Many slots' worth: another origin's copy arrives within seconds of the first."""


class RelayedBlocks:
    """The hashes of the latest :data:`RELAYED_BLOCKS_KEPT` blocks relayed by gossip."""

    def __init__(self, limit: int = RELAYED_BLOCKS_KEPT) -> None:
        self.limit = limit
        self._hashes: OrderedDict[BlockHash, None] = OrderedDict()
        self.dropped = 0
        """Copies that went no further."""

    def is_repeat(self, block_hash: BlockHash, accepted: bool) -> bool:
        """Whether a gossip copy of ``block_hash`` stops here (we relayed one and hold
        the block); if not, the caller relays it and it is remembered as relayed."""
        if accepted and block_hash in self._hashes:
            self.dropped += 1
            return True
        self._hashes[block_hash] = None
        self._hashes.move_to_end(block_hash)
        while len(self._hashes) > self.limit:
            self._hashes.popitem(last=False)
        return False
