"""What finality lets a node forget (DESIGN.md, "Finality and sync").

When the head chain finalizes a later checkpoint (``chain/finality.py``), every branch
that does not descend from it can never become the head again: the fork choice is
re-rooted there (``ForkChoice.prune``) and those branches' blocks and states leave
memory. Below the finalized block the node keeps the last ``RETAIN_SLOTS`` slots of its
chain in memory, for the readers that look a little way back (the API's recent chain,
migration look-backs); older blocks live only in the node's store, which serves them
to syncing peers (``ArchiveSyncWanted``). Memory is then bounded by the retained window
plus the unfinalized tip, not by the chain's length. Each advance (``FinalityAdvanced``)
carries the blocks it finalized with their parents' registries, collected before any
pruning, so the node can store what it derives from them (the apps' history).

A block at or below the finalized slot that the node does not hold conflicts with
finality, or is history it has already pruned: it is ignored, never applied.
"""

from __future__ import annotations

from edgechain.chain.model import Checkpoint
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.context import EngineContext
from edgechain.consensus.messages import FinalityAdvanced, Output
from edgechain.orchestrator.fleet import ChainStep
from edgechain.types import BlockHash, Slot

RETAIN_SLOTS = 64
"""Slots of the finalized chain kept in memory below the finalized block."""


class ChainPruner:
    """Follows the head's finalized checkpoint and prunes memory behind it."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.finalized: Checkpoint | None = None
        self.finalized_slot = Slot(0)
        self.blocks_pruned = 0
        self.stale_blocks_ignored = 0
        """Blocks at or below the finalized slot that were not on our chain."""

    def is_below_finality(self, slot: int) -> bool:
        """Whether a block at ``slot`` that we do not hold must be ignored."""
        return self.finalized is not None and slot <= self.finalized_slot

    def on_anchor_installed(self, state: BlockState) -> None:
        """The chain now starts at ``state``'s block (``EngineContext.install_anchor``),
        final in this node's view: nothing at or below it is taken any more."""
        if state.finality is not None:
            self.finalized = state.finality.finalized
        self.finalized_slot = Slot(state.slot)

    def on_head_changed(self, out: Output) -> bool:
        """Prune if the head finalized a later checkpoint; True when it did."""
        ctx = self.ctx
        state = ctx.get_head_state()
        fork = ctx.fork
        if state is None or fork is None or state.finality is None:
            return False
        finalized = state.finality.finalized
        if self.finalized is not None and finalized.epoch <= self.finalized.epoch:
            return False
        if finalized.block not in fork:
            return False  # already below our root (cannot happen on a single chain)
        slot = fork.get_slot(finalized.block)
        # Before anything is forgotten: the blocks below may be dropped just now.
        newly_finalized = self._collect_finalized(finalized.block)
        dropped = fork.prune(finalized.block)
        self.finalized, self.finalized_slot = finalized, slot
        forgotten = self._forget(dropped, finalized.block, slot)
        self.blocks_pruned += forgotten
        out.events.append(FinalityAdvanced(finalized, slot, forgotten, newly_finalized))
        return True

    def _collect_finalized(self, upto: BlockHash) -> tuple[ChainStep, ...]:
        """The chain from after the previously finalized block (the genesis at first) up
        to ``upto``, oldest first, each block with its parent's registry. All of it is
        still in memory: it lies above the fork choice's current root."""
        ctx = self.ctx
        stop = self.finalized.block if self.finalized is not None else None
        steps: list[ChainStep] = []
        block_hash = upto
        while block_hash != stop:
            block = ctx.blocks.get(block_hash)
            if block is None:
                break  # the genesis
            before = ctx.states.get(block.parent)
            if before is None:
                break  # cannot happen: a held block's parent state is held
            steps.append((block_hash, block, before.registry))
            block_hash = block.parent
        steps.reverse()
        return tuple(steps)

    def _forget(self, dropped: frozenset[BlockHash], root: BlockHash, root_slot: Slot) -> int:
        """Drop pruned branches, and our own chain below the retained window."""
        ctx = self.ctx
        keep: set[BlockHash] = set()
        cutoff = root_slot - RETAIN_SLOTS
        below: list[BlockHash] = []
        current = ctx.blocks.get(root)
        while current is not None:
            parent = current.parent
            block = ctx.blocks.get(parent)
            if block is None:
                break
            if block.slot >= cutoff:
                keep.add(parent)
            else:
                below.append(parent)
            current = block
        forgotten = 0
        for block_hash in (*dropped, *below):
            if block_hash in keep or block_hash not in ctx.blocks:
                continue
            del ctx.blocks[block_hash]
            ctx.states.pop(block_hash, None)
            forgotten += 1
        return forgotten
