"""A bounded memo of pure results, keyed by content, and the signature cache it holds."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar, cast

from edgechain.chain.encoding import compute_block_hash
from edgechain.chain.model import AnyBlock
from edgechain.chain.signature_cache import SignatureCache
from edgechain.types import BlockHash

T = TypeVar("T")


class Memo:
    """A bounded memo of pure results, keyed by content (hashes, slots).

    A real node keeps its own; the simulator may hand one instance to all simulated
    nodes, which is safe precisely because every key determines its value (DESIGN.md,
    "Scale path": shared verification results keyed by content hash).
    """

    def __init__(self, randomness: bytes, max_entries: int = 1_024) -> None:
        # About 11 entries a block (hash, verdict, state, roles, plan, clusters, ...):
        # 1024 keep the last ~90 slots, more than a gossip duplicate or a reorg looks
        # back. They hold blocks and states that finality has pruned from the chain
        # (consensus/pruning.py): a 20-node testnet's RSS still grew 20 KB a slot
        # until 4096 entries were full, past slot 400.
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._max = max_entries
        self.signatures = SignatureCache(randomness=randomness)
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        try:
            value = self._entries[key]
        except KeyError:
            self.misses += 1
            value = compute()
            self._entries[key] = value
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
            return value
        self.hits += 1
        return cast(T, value)

    def peek(self, key: Hashable) -> object | None:
        """The value held for ``key``, or None; computes nothing and counts nothing."""
        return self._entries.get(key)

    def get_block_hash(self, block: AnyBlock) -> BlockHash:
        """Hash by object identity: the memo holds the block, so its id is not reused.

        A node that decodes a block from bytes already knows its hash
        (``decode_block_with_hash``) and primes this with :meth:`put_block_hash`.
        """
        return self.get(("hash", id(block)), lambda: (block, compute_block_hash(block)))[1]

    def put_block_hash(self, block: AnyBlock, block_hash: BlockHash) -> None:
        self.get(("hash", id(block)), lambda: (block, block_hash))

    def put_received_hashes(self, blocks: Sequence[AnyBlock], hashes: Sequence[BlockHash]) -> None:
        """The hashes the wire decoder computed for ``blocks`` (none for blocks built in
        memory): re-encoding a block of a hundred reports to hash it cost a joining
        node more than decoding it."""
        for block, block_hash in zip(blocks, hashes, strict=False):
            self.put_block_hash(block, block_hash)
