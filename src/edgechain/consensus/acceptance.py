"""Block acceptance and head updates.

Every block is validated in full before it is accepted; the fork choice then picks the
heaviest branch. A head change emits ``HeadChanged`` and, for each newly applied block,
the ``MigrationOrder`` events that involve this node. A block this node made (or a skip
block it assembled) is published: accepted, sent straight to the next slot's producer
and committee, then gossiped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from edgechain.chain.attestation import count_signers
from edgechain.chain.model import AnyBlock, Block, PlanAction, SkipBlock
from edgechain.consensus.block_validation import ValidationMode, validate_full
from edgechain.consensus.committee import get_committee_ids
from edgechain.consensus.context import EngineContext
from edgechain.consensus.messages import (
    BlockAccepted,
    BlockMsg,
    HeadChanged,
    MigrationOrder,
    Outgoing,
    Output,
    Route,
)
from edgechain.consensus.pruning import ChainPruner
from edgechain.consensus.state import apply_block, get_roles, get_slot_start_ms
from edgechain.consensus.sync import Pending, Sync
from edgechain.crypto.hashing import compute_node_id
from edgechain.orchestrator.registry import get_record
from edgechain.types import BlockHash, NodeId, Slot

OnHeadChanged = Callable[[int, Output], None]


class BlockAcceptance:
    """Accepts validated blocks into the chain and moves the head."""

    def __init__(
        self,
        ctx: EngineContext,
        sync: Sync,
        pruner: ChainPruner,
        on_head_changed: OnHeadChanged,
    ) -> None:
        self.ctx = ctx
        self.sync = sync
        self.pruner = pruner
        self.on_head_changed = on_head_changed
        self.is_backward_sync_paused: Callable[[], bool] = lambda: False
        """True while checkpoint sync follows the chain (``consensus/checkpoint_sync.py``):
        an orphan's parent is then not asked for, the follow brings it."""
        self.mode = ValidationMode(check_attestation=True, proof_scale=ctx.config.proof_scale)

    def on_block(
        self, block: AnyBlock, block_hash: BlockHash, sender: NodeId | None, now: int, out: Output
    ) -> None:
        """Accept ``block`` and then every orphan it unblocks, breadth first."""
        queue: deque[Pending] = deque([(block, block_hash, sender)])
        while queue:
            item, item_hash, item_sender = queue.popleft()
            if self.accept(item, item_hash, item_sender, now, out):
                queue.extend(self.sync.take_orphans(item_hash))

    def accept(
        self,
        block: AnyBlock,
        block_hash: BlockHash,
        sender: NodeId | None,
        now: int,
        out: Output,
        *,
        trusted: bool = False,
    ) -> bool:
        """Validate and apply ``block``; ``trusted``: it comes from this node's own store,
        where only blocks that passed ``validate_full`` are ever written
        (``node/events.py`` stores on ``BlockAccepted``), so a restart applies it without
        checking its VDF, plan and signatures again (``on_stored_block``)."""
        ctx = self.ctx
        params, fork = ctx.params, ctx.fork
        assert params is not None and fork is not None
        if block_hash in ctx.states:
            return False
        if self.pruner.is_below_finality(block.slot) or (
            block.parent in ctx.states and block.parent not in fork
        ):
            # Not on our chain and at or below finality, or built on history below the
            # finalized root: a branch that can never become the head (pruning.py).
            self.pruner.stale_blocks_ignored += 1
            return False
        if get_slot_start_ms(params, block.slot) > now + ctx.config.future_tolerance_ms:
            self.sync.hold(block, block_hash, sender)
            return False
        parent = ctx.states.get(block.parent)
        if parent is None:
            self.sync.add_orphan(block, block_hash, sender)
            if (
                sender is not None
                and self.sync.is_missing_root(block.parent)
                and not self.is_backward_sync_paused()
            ):
                self.sync.request_sync(block.parent, sender, now, out, block.slot)
            return False
        if trusted:
            signers = count_signers(block.signers)
        else:
            signers = validate_full(ctx.memo, params, parent, block, block_hash, self.mode)
        state = ctx.memo.get(
            ("state", block_hash),
            lambda: apply_block(parent, block, block_hash, params),
        )
        ctx.states[block_hash] = state
        ctx.blocks[block_hash] = block
        fork.add(block_hash, block.parent, block.slot, signers)
        is_skip = isinstance(block, SkipBlock)
        if is_skip:
            ctx.stats.skip_blocks_accepted += 1
        else:
            ctx.stats.blocks_accepted += 1
        out.events.append(BlockAccepted(block_hash, block.slot, is_skip, signers, block))
        self.update_head(now, out)
        return True

    def update_head(self, now: int, out: Output) -> None:
        ctx = self.ctx
        fork = ctx.fork
        assert fork is not None and ctx.head is not None
        new_head = fork.get_head()
        if new_head == ctx.head:
            return
        reorg = fork.compute_reorg(ctx.head, new_head)
        if reorg.revert:
            ctx.stats.reorgs += 1
        out.events.append(HeadChanged(ctx.head, new_head, reorg.revert, reorg.apply))
        ctx.head = new_head
        for applied in reorg.apply:
            self.emit_migration_orders(applied, out)
        self.on_head_changed(now, out)

    def emit_migration_orders(self, block_hash: BlockHash, out: Output) -> None:
        block = self.ctx.blocks.get(block_hash)
        if not isinstance(block, Block) or not block.plan:
            return
        registry = self.ctx.states[block_hash].registry
        node_id = self.ctx.node_id
        for entry in block.plan:
            record = get_record(registry, entry.app)
            involved = entry.destination == node_id or (
                entry.action is PlanAction.MIGRATE and entry.origin == node_id
            )
            if involved:
                out.events.append(
                    MigrationOrder(block_hash, block.slot, entry, record.spec if record else None)
                )

    def publish(self, block: AnyBlock, block_hash: BlockHash, now: int, out: Output) -> None:
        """Accept our new block (or assembled skip block), then send it out.

        Gossip reaches everyone in a few hops, but each hop waits for a busy node to
        read its socket. The next slot's producer and committee cannot start without
        this block, and whoever made it already knows them (the roles follow from its
        seed), so they get it directly first: one hop on the slot's critical path.
        """
        ctx = self.ctx
        self.on_block(block, block_hash, None, now, out)
        state = ctx.states.get(block_hash)
        params = ctx.params
        if state is not None and params is not None and len(state.validators):
            slot = Slot(block.slot + 1)
            roles = get_roles(ctx.memo, state, slot, params.committee_size)
            committee = get_committee_ids(ctx.memo, state, slot, roles)
            duties = [compute_node_id(roles.producer), *committee]
            to = tuple(node for node in dict.fromkeys(duties) if node != ctx.node_id)
            if to:
                out.messages.append(Outgoing(BlockMsg(block), Route.DIRECT, to))
        out.messages.append(Outgoing(BlockMsg(block), Route.GOSSIP))
