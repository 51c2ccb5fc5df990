"""Network coordinates in the simulator: each node's Vivaldi samples, and how tight the
overlay's clusters are in latency (issue 15, item 2).

With a geographic latency model (``SimConfig.geo_regions``, ``sim/geography.py``) every
live node, at each slot start, takes RTT samples to random validators of its head, as a
real node's probe does (``node/rtt.py``), and feeds them to the same Vivaldi update
(``cluster/vivaldi.py``) against the coordinates its head has for them; the result is
the coordinate its next report carries. The samples are drawn from the model (twice the
one-way delay, plus up to 10 % of jitter), not timed through simulated pings: the
messages would change nothing but the run's cost. They use their own seeded RNG, so a
run without coordinates keeps its network draws.

Per slot, the layer also measures the overlay the majority head gives (what reports
travel by) against the hash-position overlay of the reference implementation on the
same validators and seed (``cluster/kmeans.compute_clusters`` without coordinates): the
one-way delay from each member to its representative. ``summary.cluster_latency`` sets
the two side by side.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from edgechain.chain.model import ORIGIN
from edgechain.cluster.kmeans import compute_clusters, is_coordinate_mode
from edgechain.cluster.vivaldi import VivaldiState, process_sample
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.memo import Memo
from edgechain.consensus.reports import get_clustering
from edgechain.sim.geography import (
    Geography,
    compute_cluster_latency_us,
    compute_mean_ms,
    summarize_us,
)
from edgechain.types import NodeId

if TYPE_CHECKING:
    from edgechain.sim.runner import Simulation

PROBE_INTERVAL_MS = 5_000
"""A real node's probe interval (``node/rtt.PROBE_INTERVAL_MS``): a simulated node takes
as many samples per slot as a real one would, and at least one."""

JITTER_PERCENT = 10


@dataclass(frozen=True)
class SlotLatency:
    """One slot's overlay, measured: mean member-to-representative delays (ms)."""

    slot: int
    overlay_ms: float
    hash_ms: float
    coordinate_mode: bool


@dataclass
class CoordinateLayer:
    """Every simulated node's Vivaldi state, and the per-slot cluster measurements."""

    geography: Geography
    seed: int
    slot_duration_ms: int
    nodes_per_cluster: int
    states: dict[NodeId, VivaldiState] = field(default_factory=dict)
    slots: list[SlotLatency] = field(default_factory=list)
    overlay_us: list[int] = field(default_factory=list)
    hash_us: list[int] = field(default_factory=list)
    """Member-to-representative delays of every slot in coordinate mode."""
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        seed = hashlib.sha256(b"edgechain/sim/vivaldi" + self.seed.to_bytes(8, "big")).digest()
        self.rng = random.Random(seed)

    def on_slot(self, sim: Simulation, slot: int) -> None:
        """Slot start: every live node samples and reports its coordinate; the
        majority head's overlay is measured."""
        samples = max(1, self.slot_duration_ms // PROBE_INTERVAL_MS)
        for node in sim.nodes:
            head = node.engine.get_head_state() if node.up else None
            if head is None:
                continue
            me = node.ident.node
            state = self.states.get(me, VivaldiState())
            peers = head.validators.get_node_ids()
            for _ in range(samples):
                peer = peers[self.rng.randrange(len(peers))]
                if peer == me:
                    continue
                one_way = self.geography.get_one_way_us(me, peer)
                rtt = 2 * one_way + self.rng.randrange(1 + 2 * one_way * JITTER_PERCENT // 100)
                peer_at = head.coordinates.get(peer, ORIGIN)
                state = process_sample(state, peer_at, rtt, me + peer)
            self.states[me] = state
            usage = node.engine.get_local_usage()
            node.engine.set_local_usage(replace(usage, coordinate=state.coordinate))
        head = sim.get_majority_head()
        if head is not None:
            self.measure(head, slot, sim.memo)

    def measure(self, head: BlockState, slot: int, memo: Memo) -> None:
        """The overlay of the slot after ``head`` against hash positions."""
        validators = head.validators.get_node_ids()
        mode = is_coordinate_mode(validators, head.coordinates)
        overlay = get_clustering(memo, head, self.nodes_per_cluster)
        # Before coordinate mode the overlay *is* the hash-position clustering.
        hashed = (
            compute_clusters(validators, head.seed, self.nodes_per_cluster) if mode else overlay
        )
        overlay_us = compute_cluster_latency_us(
            overlay.clusters, overlay.representatives, self.geography
        )
        hash_us = compute_cluster_latency_us(
            hashed.clusters, hashed.representatives, self.geography
        )
        self.slots.append(
            SlotLatency(slot, compute_mean_ms(overlay_us), compute_mean_ms(hash_us), mode)
        )
        if mode:
            self.overlay_us += overlay_us
            self.hash_us += hash_us

    def summary(self) -> dict[str, Any]:
        mode_slots = [s.slot for s in self.slots if s.coordinate_mode]
        return {
            "regions": self.geography.regions,
            "coordinate_mode_from_slot": mode_slots[0] if mode_slots else None,
            "coordinate_mode_slots": len(mode_slots),
            "overlay": summarize_us(self.overlay_us),
            "hash_positions": summarize_us(self.hash_us),
            "by_slot": [
                [s.slot, s.overlay_ms, s.hash_ms, int(s.coordinate_mode)] for s in self.slots
            ],
        }
