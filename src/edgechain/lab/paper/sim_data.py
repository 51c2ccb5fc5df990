"""What the paper's figures 7, 8, 9, 11 and 12 are drawn from, read out of a finished
simulation (``sim/runner.py``) as plain JSON-ready dicts.

Everything here reads the run's *canonical* chain (the heaviest honest head,
``sim/summary.get_reference_chain``) and the records the harness keeps: the blocks
every honest node accepted, the auditor's state after each block, and the report
deliveries (``sim/report_metrics.py``). Nothing changes the run. Nodes are named by
their index in the simulation (``n0`` is the bootstrap node).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from edgechain.chain.model import Block
from edgechain.consensus.block_state import BlockState
from edgechain.lab.paper.stacks import choose_bar_nodes, get_node_label, pick_even_moments
from edgechain.orchestrator.load import get_cpu_request_bp
from edgechain.sim.runner import Simulation
from edgechain.sim.summary import SimResult, get_reference_chain
from edgechain.telemetry.cpu import compute_percentile
from edgechain.types import BlockHash, NodeId

ROLES = ("producer", "committee", "representative")
"""The roles the simulator's role table counts (``sim/summary.py``; paper Fig. 7)."""

BASIS_POINTS_PER_PERCENT = 100


def compute_distribution(values: Sequence[float]) -> dict[str, float | None]:
    """min, p25, p50, p75, p90, max and mean (nearest rank on hundredths)."""
    if not values:
        return dict.fromkeys(("min", "p25", "p50", "p75", "p90", "max", "mean"))
    scaled = [round(v * 100) for v in values]
    out: dict[str, float | None] = {"min": min(values), "max": max(values)}
    for name, fraction in (("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p90", 0.9)):
        out[name] = compute_percentile(scaled, fraction) / 100
    out["mean"] = round(statistics.fmean(values), 3)
    return out


def get_roles_by_node(sim: Simulation, result: SimResult) -> dict[str, Any]:
    """Fig. 7: per role, how often each node (by index) was elected."""
    labels = [get_node_label(node.index) for node in sim.nodes]
    keys = [node.ident.node.hex()[:16] for node in sim.nodes]
    counts = {role: [int(result.roles.get(key, {}).get(role, 0)) for key in keys] for role in ROLES}
    return {
        "nodes": labels,
        "counts": counts,
        "elected_at_least_once": {role: sum(1 for c in counts[role] if c > 0) for role in ROLES},
    }


def get_slot_series(result: SimResult) -> dict[str, Any]:
    """Fig. 8: per slot the kind of block (block, skip, none), its votes and its time."""
    return {
        "slot": [int(r["slot"]) for r in result.slots],
        "kind": [str(r["kind"]) for r in result.slots],
        "votes": [int(r["votes"]) for r in result.slots],
        "block_time_ms": [r["block_time_ms"] for r in result.slots],
    }


def get_canonical_blocks(sim: Simulation) -> dict[int, tuple[BlockHash, BlockState | None]]:
    """Slot → (block hash, state after it) of the canonical chain."""
    states = sim.auditor.states if sim.auditor is not None else {}
    out: dict[int, tuple[BlockHash, BlockState | None]] = {}
    for block_hash in get_reference_chain(sim):
        out[int(sim.blocks[block_hash].slot)] = (block_hash, states.get(block_hash))
    return out


def get_cpu_load_series(sim: Simulation, slots_run: int) -> dict[str, Any]:
    """Fig. 9: per slot, the distribution over the nodes of each node's latest reported
    CPU load (``ResourceReport.cpu_bp``, in %) carried by the canonical chain up to
    that slot: what the planner sees. A node reports every few slots (at its phase),
    so its latest report stands until the next one."""
    canonical = get_canonical_blocks(sim)
    latest: dict[NodeId, int] = {}
    reports_carried = 0
    changed = 0
    per_slot: list[dict[str, float | None]] = []
    reporting: list[int] = []
    for slot in range(1, slots_run + 1):
        found = canonical.get(slot)
        block = sim.blocks[found[0]] if found is not None else None
        if isinstance(block, Block):
            for report in block.reports:
                reports_carried += 1
                if latest.get(report.node, report.cpu_bp) != report.cpu_bp:
                    changed += 1
                latest[report.node] = report.cpu_bp
        loads = [bp / BASIS_POINTS_PER_PERCENT for bp in latest.values()]
        per_slot.append(compute_distribution(loads))
        reporting.append(len(loads))
    return {
        "slot": list(range(1, slots_run + 1)),
        "distribution_pct": per_slot,
        "nodes_reporting": reporting,
        "reports_carried": reports_carried,
        "reports_changed": changed,
        # The simulated nodes report every app at its spec's CPU request
        # (``AppLayer._report_usage``): no app's load varies over time (report.md says so).
        "time_varying_app_load": False,
    }


def get_app_stacks(sim: Simulation, slots_run: int) -> dict[str, Any]:
    """Fig. 11: at a few slots, the apps the canonical chain's registry places on each
    node, each at its spec's CPU request in % (the load the simulator's nodes report
    for it, ``sim/apps.py``). The state of a slot without a block is its latest
    block's."""
    canonical = get_canonical_blocks(sim)
    index = {node.ident.node: node.index for node in sim.nodes}
    moments = pick_even_moments(1, slots_run)
    stacks: dict[str, dict[str, list[float]]] = {}
    queued: dict[str, int] = {}
    state: BlockState | None = None
    by_slot: dict[int, BlockState | None] = {}
    for slot in range(1, slots_run + 1):
        found = canonical.get(slot)
        if found is not None and found[1] is not None:
            state = found[1]
        by_slot[slot] = state
    for moment in moments:
        at = by_slot.get(moment)
        nodes: dict[str, list[float]] = {}
        waiting = 0
        for record in at.registry.records if at is not None else ():
            if record.node is None:
                waiting += 1
                continue
            label = get_node_label(index[record.node])
            load = get_cpu_request_bp(record.spec) / BASIS_POINTS_PER_PERCENT
            nodes.setdefault(label, []).append(load)
        stacks[str(moment)] = {k: sorted(v, reverse=True) for k, v in nodes.items()}
        queued[str(moment)] = waiting
    return {
        "moments": moments,
        "stacks": stacks,
        "queued": queued,
        "shown_nodes": choose_bar_nodes(stacks.values(), len(sim.nodes)),
        "total_nodes": len(sim.nodes),
    }


def get_report_samples(sim: Simulation) -> dict[str, Any]:
    """Fig. 12: every carried report's travel times (to its representative, to the
    producer), the slot of the block that carried it, and each block's inclusion."""
    metrics = sim.report_metrics
    blocks = sorted(metrics.blocks)
    return {
        "to_representative_ms": list(metrics.to_representative_ms),
        "to_producer_ms": list(metrics.to_producer_ms),
        "sample_slot": list(metrics.sample_slots),
        "block_slot": [slot for slot, _, _ in blocks],
        "block_due": [due for _, due, _ in blocks],
        "block_included": [included for _, _, included in blocks],
        "interval_slots": metrics.interval_slots,
    }


def get_sim_data(sim: Simulation, result: SimResult) -> dict[str, Any]:
    """Everything the simulated figures need, JSON-ready."""
    slots_run = int(result.summary.get("slots_run", result.summary["slots"]))
    return {
        "roles": get_roles_by_node(sim, result),
        "slots": get_slot_series(result),
        "cpu_load": get_cpu_load_series(sim, slots_run),
        "app_stacks": get_app_stacks(sim, slots_run),
        "reports": get_report_samples(sim),
    }
