"""The simulated nodes' stores, for what finality pruned from their memory.

A real node answers a sync for blocks it pruned below finality from its SQLite store
(``node/archive.py``). Simulated nodes have no store; the run's record of every block
an honest node accepted (``Simulation.blocks``) stands in for it. That is a little more
than one node's store holds (it has the blocks *any* honest node accepted), which only
matters to a peer asking for a block its sender never had; senders answer for blocks
of their own chain.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from edgechain.chain.model import AnyBlock
from edgechain.consensus.checkpoint_sync import complete_forward_chain
from edgechain.consensus.messages import (
    ArchiveForwardWanted,
    ArchiveSyncWanted,
    ForwardSyncResponseMsg,
    SyncResponseMsg,
)
from edgechain.consensus.sync import collect_ancestry
from edgechain.types import BlockHash, Slot

if TYPE_CHECKING:
    from edgechain.consensus.engine import ConsensusEngine
    from edgechain.sim.runner import Simulation
    from edgechain.sim.world import SimNode


def get_chain_from(blocks: Mapping[BlockHash, AnyBlock], tip: BlockHash | None) -> list[BlockHash]:
    """The chain ending at ``tip`` through ``blocks``' parent links, oldest first."""
    chain: list[BlockHash] = []
    while tip is not None and tip in blocks:
        chain.append(tip)
        tip = blocks[tip].parent
    chain.reverse()
    return chain


class RunArchive:
    """A simulated node's store answering the app model's checks of moves its memory no
    longer holds (``lifecycle.ChainArchive``, ``node/archive.StoreArchive``): its head
    chain through the run's blocks. Asked only below memory, i.e. of finalized slots."""

    def __init__(self, blocks: Mapping[BlockHash, AnyBlock], engine: ConsensusEngine) -> None:
        self.blocks = blocks
        self.engine = engine

    def get_block_at(self, slot: Slot) -> tuple[BlockHash, AnyBlock] | None:
        for block_hash, block in self._walk():
            if block.slot <= slot:
                return (block_hash, block) if block.slot == slot else None
        return None

    def get_finalized_block(self, block_hash: BlockHash) -> AnyBlock | None:
        target = self.blocks.get(block_hash)
        if target is None:
            return None
        for current, block in self._walk():
            if block.slot <= target.slot:
                return block if current == block_hash else None
        return None

    def _walk(self) -> Iterator[tuple[BlockHash, AnyBlock]]:
        """The head chain, newest first."""
        current = self.engine.head
        while current is not None and current in self.blocks:
            block = self.blocks[current]
            yield current, block
            current = block.parent


def serve_archive(sim: Simulation, node: SimNode, event: ArchiveSyncWanted) -> None:
    """Answer ``event``'s sync from the run's blocks, as a node's store would."""
    blocks, current = collect_ancestry(sim.blocks.get, event.want, event.limit)
    if not blocks:
        return
    engine = node.engine
    reaches_genesis = current == engine.ctx.get_genesis_hash()
    message = SyncResponseMsg(tuple(blocks), engine.genesis_msg if reaches_genesis else None)
    sim.transport.send_direct(node, message, event.sender)


def serve_forward(sim: Simulation, node: SimNode, event: ArchiveForwardWanted) -> None:
    """Answer a checkpoint sync's forward request from the node's finalized chain (the
    run's blocks below its root), then its memory, as a node's canonical index would."""
    ctx = node.engine.ctx
    fork = ctx.fork
    if fork is None:
        return
    chain = get_chain_from(sim.blocks, fork.get_root())
    if event.after == ctx.get_genesis_hash():
        start = 0
    else:
        try:
            start = chain.index(event.after) + 1
        except ValueError:
            start = -1
    blocks: tuple[AnyBlock, ...] = ()
    if start >= 0:
        archived = [(h, sim.blocks[h]) for h in chain[start : start + event.limit]]
        blocks = complete_forward_chain(ctx, archived, event.after, event.limit)
    sim.transport.send_direct(node, ForwardSyncResponseMsg(event.after, blocks), event.sender)
