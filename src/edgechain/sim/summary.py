"""A simulation's result: the summary, the per-slot records and the role table
(producer, committee member and cluster representative counts per node, paper Fig. 7)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgechain.chain.attestation import count_signers
from edgechain.chain.model import ChainParams, SkipBlock
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.reports import get_clustering
from edgechain.consensus.state import get_roles, get_slot_start_ms
from edgechain.crypto.hashing import compute_node_id
from edgechain.sim.archive import get_chain_from
from edgechain.types import BlockHash, NodeId, Slot

if TYPE_CHECKING:
    from edgechain.sim.runner import Simulation
    from edgechain.sim.world import SimNode


@dataclass
class SlotRecord:
    slot: int
    producer: int | None
    kind: str
    votes: int
    block_time_ms: int | None


@dataclass
class SimResult:
    summary: dict[str, Any]
    slots: list[dict[str, Any]]
    roles: dict[str, dict[str, int]]
    trace_digest: str

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "slots": self.slots,
            "roles": self.roles,
            "trace_digest": self.trace_digest,
        }


def get_finality_summary(sim: Simulation, honest: list[SimNode]) -> dict[str, Any]:
    """The reference chain's finality and what the nodes hold in memory for it."""
    finalized = [n.engine.pruner.finalized for n in honest]
    slots = [n.engine.pruner.finalized_slot for n in honest if n.engine.pruner.finalized]
    return {
        "finalized_epoch_max": max((c.epoch for c in finalized if c is not None), default=0),
        "finalized_slot_min": min(slots, default=0),
        "finalized_slot_max": max(slots, default=0),
        "blocks_in_memory_max": max((len(n.engine.blocks) for n in honest), default=0),
        "stale_blocks_ignored": sum(n.engine.pruner.stale_blocks_ignored for n in honest),
    }


def get_reference_node(sim: Simulation) -> SimNode:
    """The honest node (up) whose head has the most weight (lowest index on ties): its
    chain is the run's canonical chain."""
    return max(
        sim._honest_up(),
        key=lambda n: (
            n.engine.fork.get_weight(n.engine.head) if n.engine.fork and n.engine.head else 0,
            -n.index,
        ),
    )


def get_reference_chain(sim: Simulation) -> list[BlockHash]:
    """The canonical chain's blocks, genesis side first (``get_reference_node``'s head;
    the run's records hold the blocks the nodes pruned)."""
    return get_chain_from(sim.blocks, get_reference_node(sim).engine.head)


def get_representatives(sim: Simulation, params: ChainParams, parent: BlockState) -> list[NodeId]:
    """The cluster representatives of the slot after ``parent`` (paper §3.2, Fig. 7):
    its members report through them (``consensus/reports.get_clustering``)."""
    return list(get_clustering(sim.memo, parent, params.nodes_per_cluster).representatives)


def build_result(sim: Simulation, params: ChainParams, wall: float) -> SimResult:
    """The run's summary, one record per slot on the heaviest honest chain, and the
    role counts (producer, committee member, cluster representative)."""
    honest = sim._honest_up()
    heads = {n.engine.head for n in honest}
    reference = get_reference_node(sim)
    # Nodes prune their memory below finality: the run's own records (every block
    # accepted, the auditor's states) hold the whole chain.
    states = sim.auditor.states if sim.auditor is not None else reference.engine.states
    chain = get_chain_from(sim.blocks, reference.engine.head)
    by_slot: dict[int, BlockHash] = {sim.blocks[h].slot: h for h in chain}
    records: list[dict[str, Any]] = []
    role_counts: dict[str, Counter[str]] = {n.ident.node.hex()[:16]: Counter() for n in sim.nodes}
    genesis = reference.engine.ctx.get_genesis_hash()
    parent_state = states.get(genesis) if genesis is not None else None
    for slot in range(1, sim.slots_run + 1):
        block_hash = by_slot.get(slot)
        producer_index: int | None = None
        if parent_state is not None and parent_state.slot < slot:
            roles = get_roles(sim.memo, parent_state, Slot(slot), params.committee_size)
            producer = sim.by_id.get(compute_node_id(roles.producer))
            producer_index = producer.index if producer else None
            role_counts[compute_node_id(roles.producer).hex()[:16]]["producer"] += 1
            for pk in roles.committee:
                role_counts[compute_node_id(pk).hex()[:16]]["committee"] += 1
            for node_id in get_representatives(sim, params, parent_state):
                role_counts[node_id.hex()[:16]]["representative"] += 1
        if block_hash is None:
            records.append(dataclasses.asdict(SlotRecord(slot, producer_index, "none", 0, None)))
            continue
        block = sim.blocks[block_hash]
        kind = "skip" if isinstance(block, SkipBlock) else "block"
        accepted = sim.accept_times.get(block_hash)
        block_time = None if accepted is None else accepted - get_slot_start_ms(params, slot)
        votes = count_signers(block.signers)
        records.append(
            dataclasses.asdict(SlotRecord(slot, producer_index, kind, votes, block_time))
        )
        parent_state = states.get(block_hash)
    kinds = Counter(r["kind"] for r in records)
    head_state = reference.engine.get_head_state()
    for node in sim.nodes:
        sim.peer_errors.update(node.engine.stats.peer_errors)
    vote_counts = [r["votes"] for r in records if r["kind"] == "block"]
    block_times = sorted(r["block_time_ms"] for r in records if r["block_time_ms"] is not None)
    summary: dict[str, Any] = {
        "nodes": sim.config.nodes,
        "committee": sim.config.committee,
        "slots": sim.config.slots,
        "slots_run": sim.slots_run,
        "slot_duration_ms": sim.config.slot_duration_ms,
        "seed": sim.config.seed,
        "faults": sim.config.faults,
        "blocks": kinds["block"],
        "skip_blocks": kinds["skip"],
        "empty_slots": kinds["none"],
        "forks_resolved": sim.reorgs,
        "checkpoints_installed": sim.checkpoints_installed,
        "distinct_heads": len(heads),
        "violations": list(sim.violations),
        "validators_at_end": len(head_state.validators) if head_state else 0,
        "votes_per_block": {
            "min": min(vote_counts, default=0),
            "max": max(vote_counts, default=0),
            "mean": round(sum(vote_counts) / len(vote_counts), 2) if vote_counts else 0,
        },
        "block_time_ms": {
            "p50": block_times[len(block_times) // 2] if block_times else None,
            "max": block_times[-1] if block_times else None,
        },
        "finality": get_finality_summary(sim, honest),
        "peer_errors": dict(sorted(sim.peer_errors.items())),
        "crashed_producers": [[s, n.hex()[:16]] for s, n in sim.crashed_producers],
        **({"apps": sim.apps.summary()} if sim.apps is not None else {}),
        **({"cluster_latency": sim.coordinates.summary()} if sim.coordinates is not None else {}),
        **sim.report_metrics.summary(),
        "messages": sim.net.stats().sent,
        "wall_seconds": round(wall, 2),
    }
    role_table = {k: dict(sorted(v.items())) for k, v in sorted(role_counts.items())}
    digest = sim.net.trace_digest() if sim.config.trace else ""
    return SimResult(summary, records, role_table, digest)


def compute_result_digest(result: SimResult) -> str:
    """Digest of everything but wall time, to compare two runs of one seed."""
    data = result.to_json()
    data["summary"] = {k: v for k, v in data["summary"].items() if k != "wall_seconds"}
    return hashlib.sha256(repr(data).encode()).hexdigest()
