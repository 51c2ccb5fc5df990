"""The chain state after a block: what its child needs (``consensus/state.py`` has
the transition, ``consensus/state_codec.py`` the canonical encoding and root)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgechain.chain.authority import Authority
from edgechain.chain.finality import FinalityState
from edgechain.chain.model import Coordinate, ResourceReport
from edgechain.chain.validator_set import ValidatorSet
from edgechain.orchestrator.liveness import NO_STALL, Stall
from edgechain.orchestrator.registry import Registry
from edgechain.types import BlockHash, NodeId, Slot


@dataclass(frozen=True)
class BlockState:
    """The state after a block (or genesis)."""

    block_hash: BlockHash
    slot: Slot
    seed: bytes
    validators: ValidatorSet
    difficulty: int
    """VDF iterations the child must evaluate."""
    registry: Registry
    reports: tuple[ResourceReport, ...]
    """Planner input for the child: each validator's latest report on this chain (at
    most ``state.get_report_max_age`` slots old), sorted by node. Nodes need not report every slot:
    a block carries the reports that arrived, the state carries everyone's latest."""
    signers: int
    is_skip: bool
    vdf_group: BlockHash
    """The group hash this block's VDF was evaluated in (its group period's: the hash of
    the last block before the period began, ``state.compute_vdf_group``); the genesis's
    is its own hash."""
    authority: Authority = field(default_factory=Authority)
    """Admin and operator keys, their sequence numbers, banned nodes (``chain/authority``)."""
    last_seen: Mapping[NodeId, Slot] = field(default_factory=dict)
    """Each validator's latest contributing slot on this chain: block produced, vote in
    an attestation, report carried (``orchestrator/liveness.py``). Never mutated."""
    coordinates: Mapping[NodeId, Coordinate] = field(default_factory=dict)
    """Each validator's network coordinate on this chain, for those that ever reported
    one (keys sorted): moved towards each new report's by a bounded step
    (``cluster/vivaldi.compute_next_coordinate``); what the overlay clusters on
    (``cluster/kmeans.py``). Never mutated."""
    departures: Mapping[NodeId, Slot] = field(default_factory=dict)
    """The nodes that left the set in the last ``INCLUSION_MAX_AGE_SLOTS`` slots (exit,
    exclusion), each with the slot it left at (keys sorted): a request to join again
    must be signed no earlier (``chain/departures.py``). Never mutated."""
    stall: Stall = NO_STALL
    """The latest stretch of slots this chain got no block in, not counted as anyone's
    silence (``orchestrator/liveness.get_silence_start``)."""
    finality: FinalityState | None = None
    """Justified and finalized checkpoints of this chain (``chain/finality.py``); None
    only in hand-built test states."""
