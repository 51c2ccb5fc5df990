"""The simulator's checks: an auditor that re-validates every block an honest node
accepts, with a memo of its own, and the per-slot invariants."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgechain.chain.encoding import compute_block_hash
from edgechain.chain.model import AnyBlock, ChainParams, Genesis
from edgechain.chain.signature_cache import SignatureCache
from edgechain.consensus.block_validation import ValidationMode, validate_full
from edgechain.consensus.state import BlockState, Memo, apply_block, compute_genesis_state
from edgechain.errors import PeerError
from edgechain.types import BlockHash

if TYPE_CHECKING:
    from edgechain.sim.runner import Simulation
    from edgechain.sim.world import SimNode


class Auditor:
    """Re-validates every block an honest node accepts, with a private memo."""

    def __init__(self, genesis: Genesis, proof_scale: int, signatures: SignatureCache) -> None:
        self.params = genesis.params
        self.memo = Memo(randomness=b"edgechain/sim/auditor")
        # Its own memo of roles, plans, states and verdicts; signatures it shares with
        # the simulated nodes, each still verified for real once.
        self.memo.signatures = signatures
        genesis_state = compute_genesis_state(genesis)
        self.states: dict[BlockHash, BlockState] = {genesis_state.block_hash: genesis_state}
        self.mode = ValidationMode(check_attestation=True, proof_scale=proof_scale)
        self.invalid: list[str] = []

    def check(self, block: AnyBlock, block_hash: BlockHash) -> None:
        if block_hash in self.states:
            return
        parent = self.states.get(block.parent)
        if parent is None:
            self.invalid.append(f"block {block_hash.hex()[:12]} accepted before its parent")
            return
        if compute_block_hash(block) != block_hash:
            self.invalid.append(f"block {block_hash.hex()[:12]} has another hash")
            return
        try:
            validate_full(self.memo, self.params, parent, block, block_hash, self.mode)
        except PeerError as exc:
            self.invalid.append(f"invalid block {block_hash.hex()[:12]} accepted: {exc}")
            return
        self.states[block_hash] = apply_block(parent, block, block_hash, self.params)


def check_invariants(sim: Simulation, slot: int, params: ChainParams) -> None:
    """Each slot: no invalid block accepted, validator sets as the auditor computes
    them, and (outside partitions and their healing) one prefix below ``agreement_depth``."""
    if sim.auditor is not None and sim.auditor.invalid:
        sim.violations.extend(f"slot {slot}: {v}" for v in sim.auditor.invalid)
        sim.auditor.invalid.clear()
    honest = sim._honest_up()
    if not honest:
        return
    # The validator set is a function of the block: compare with the auditor's.
    if sim.auditor is not None:
        for node in honest:
            head = node.engine.head
            if head is None:
                continue
            audited = sim.auditor.states.get(head)
            if audited is None:
                continue
            ours = node.engine.states[head].validators
            # Sets are shared from block to block until they change; comparing the same
            # two objects again (a million field compares a slot at 1000 nodes) is skipped.
            # The pair is kept (not its ids) so that neither object can be freed and its id
            # reused by another set.
            checked = sim.validators_checked.get(node.index)
            if checked is not None and checked[0] is ours and checked[1] is audited.validators:
                continue
            if audited.validators != ours:
                sim.violations.append(f"slot {slot}: validator sets differ at {head.hex()[:12]}")
            else:
                sim.validators_checked[node.index] = (ours, audited.validators)
    check_finality(sim, slot, honest)
    in_partition = sim.net.partitioned
    recently_healed = (
        sim.heal_slot is not None and slot < sim.heal_slot + sim.config.convergence_slots
    )
    if in_partition or recently_healed:
        return
    depth = slot - sim.config.agreement_depth
    if depth < 1:
        return
    prefixes = set()
    for node in honest:
        if node.engine.fork is None or node.engine.head is None:
            continue
        prefixes.add(get_ancestor_at(sim, node, depth))
    if len(prefixes) > 1:
        sim.violations.append(f"slot {slot}: honest nodes disagree below slot {depth}")


def check_finality(sim: Simulation, slot: int, honest: list[SimNode]) -> None:
    """Finality's safety, partitions included: every honest node's finalized block is
    on one chain (``chain/finality.py``), and a node's finality never moves back."""
    finalized = {
        node.index: node.engine.pruner.finalized
        for node in honest
        if node.engine.pruner.finalized is not None
    }
    for index, checkpoint in finalized.items():
        assert checkpoint is not None
        previous = sim.finalized_by_node.get(index)
        if previous is not None and checkpoint.epoch < previous.epoch:
            sim.violations.append(f"slot {slot}: node {index} finality moved back")
        sim.finalized_by_node[index] = checkpoint
    if len(finalized) < 2:
        return
    tips = {c.block for c in finalized.values() if c is not None}
    known = [h for h in tips if h in sim.blocks]
    if len(known) < 2:
        return
    # The newest finalized block's chain, walked only down to the oldest one's slot:
    # every slot, so not to genesis (that made a long run quadratic).
    oldest = min(sim.blocks[h].slot for h in known)
    newest = max(known, key=lambda h: sim.blocks[h].slot)
    chain = set()
    current: BlockHash | None = newest
    while current is not None and current in sim.blocks and sim.blocks[current].slot >= oldest:
        chain.add(current)
        current = sim.blocks[current].parent
    if any(h not in chain for h in known):
        sim.violations.append(f"slot {slot}: honest nodes finalized conflicting blocks")


def get_ancestor_at(sim: Simulation, node: SimNode, slot: int) -> BlockHash | None:
    """The block at or before ``slot`` on the node's head chain (through the run's
    blocks: the node itself keeps only a window below finality)."""
    head = node.engine.head
    while head is not None:
        block = sim.blocks.get(head)
        if block is None:
            return head  # genesis
        if block.slot <= slot:
            return head
        head = block.parent
    return None
