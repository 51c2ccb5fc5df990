"""Chain state after each block and its transition.

The state after a block is a pure function of the chain up to that block, so it is
keyed by the block hash. It carries what the *child* needs: the seed for role
election (Algorithm 2), the validator set, the VDF difficulty, the app registry, and
the resource reports the planner reads (Algorithm 1 works on the parent's data).

Full validation of a block on its parent state is ``consensus/block_validation.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol, TypeVar

from edgechain.chain.attestation import count_signers
from edgechain.chain.authority import (
    Authority,
    compute_genesis_authority,
    end_drains,
)
from edgechain.chain.departures import compute_departures
from edgechain.chain.encoding import compute_genesis_hash
from edgechain.chain.finality import FinalityState, compute_genesis_finality, process_finality
from edgechain.chain.model import (
    ORIGIN,
    AnyBlock,
    Block,
    ChainParams,
    Coordinate,
    FinalityVote,
    Genesis,
    PlanEntry,
    ResourceReport,
)
from edgechain.chain.validator_set import (
    ValidatorSet,
    apply_block_to_validator_set,
    compute_genesis_validator_set,
    get_admin_exclusions,
    get_removed_nodes,
)
from edgechain.cluster.vivaldi import compute_next_coordinate
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.memo import Memo
from edgechain.consensus.roles import Roles, compute_roles
from edgechain.crypto import vdf
from edgechain.crypto.seed import compute_block_seed, compute_genesis_seed, compute_skip_seed
from edgechain.orchestrator.commands import CommandContext, apply_commands
from edgechain.orchestrator.liveness import (
    compute_down_nodes,
    compute_last_seen,
    compute_quiet_nodes,
    compute_stall,
)
from edgechain.orchestrator.planner import compute_plan
from edgechain.orchestrator.policy import NodeInfo
from edgechain.orchestrator.registry import (
    EMPTY_REGISTRY,
    Registry,
    apply_block_to_registry,
    apply_reports_to_registry,
)
from edgechain.types import BlockHash, NodeId, Slot

T = TypeVar("T")

# Re-exported: most callers take the state, its memo and its transition from here.
__all__ = ["BlockState", "Memo"]

REPORT_MAX_AGE_SLOTS = 32
"""A report older than this many slots no longer describes its node's load (or twice
the report interval, when a genesis sets a longer one: :func:`get_report_max_age`)."""


def get_report_max_age(params: ChainParams) -> int:
    """Slots a node's latest report stays in the state: :data:`REPORT_MAX_AGE_SLOTS`,
    or two report intervals if that is longer, so a live node's load never drops out
    of the planner's view between two of its reports."""
    return max(REPORT_MAX_AGE_SLOTS, 2 * params.report_interval_slots)


def merge_reports(
    known: tuple[ResourceReport, ...],
    fresh: tuple[ResourceReport, ...],
    validators: ValidatorSet,
    slot: int,
    max_age: int,
) -> tuple[ResourceReport, ...]:
    """Each validator's latest report: ``fresh`` (this block's) over ``known`` (those
    at most ``max_age`` slots old: :func:`get_report_max_age`, which every node must
    use alike, so no default)."""
    latest = {r.node: r for r in known if r.slot + max_age >= slot}
    latest.update((r.node, r) for r in fresh)
    return tuple(latest[node] for node in sorted(latest) if node in validators)


def compute_coordinates(
    known: Mapping[NodeId, Coordinate],
    fresh: Sequence[ResourceReport],
    validators: ValidatorSet,
) -> Mapping[NodeId, Coordinate]:
    """Validators' coordinates after a block: each fresh report moves its node's by at
    most a bounded step from where the chain had it (the origin at first), so no report
    can move a node across the map (``cluster/vivaldi.py``); nodes that left drop out."""
    if not fresh and all(node in validators for node in known):
        return known
    moved = {node: c for node, c in known.items() if node in validators}
    for report in fresh:
        if report.node in validators:
            previous = moved.get(report.node, ORIGIN)
            moved[report.node] = compute_next_coordinate(previous, report.coordinate)
    return {node: moved[node] for node in sorted(moved)}


def compute_vdf_group(parent: BlockState, slot: Slot, group_slots: int) -> BlockHash:
    """The group hash of the VDF of a block at ``slot`` on ``parent``: the parent's hash
    if the block opens a group period (``ChainParams.vdf_group_slots``) the parent is
    not in, else the parent's group. So it is the hash of the last block before the
    block's period began, and every block of a period on one chain shares it
    (``crypto/vdf.py``: one discriminant per period). It is known a whole period before
    the blocks that use it end, never earlier."""
    if slot // group_slots != parent.slot // group_slots:
        return parent.block_hash
    return parent.vdf_group


def compute_genesis_state(genesis: Genesis) -> BlockState:
    genesis_hash = compute_genesis_hash(genesis)
    validators = compute_genesis_validator_set(genesis)
    return BlockState(
        block_hash=genesis_hash,
        slot=Slot(0),
        seed=compute_genesis_seed(genesis_hash),
        validators=validators,
        difficulty=genesis.params.initial_difficulty,
        registry=EMPTY_REGISTRY,
        reports=(),
        signers=0,
        is_skip=False,
        vdf_group=genesis_hash,
        authority=compute_genesis_authority(genesis.params),
        last_seen=dict.fromkeys(sorted(validators.get_node_ids()), Slot(0)),
        finality=compute_genesis_finality(genesis_hash, validators),
    )


class FinalityParent(Protocol):
    """What counting a block's finality votes reads of its parent: a full
    ``BlockState`` or the light state of checkpoint sync (``consensus/light_client``)."""

    @property
    def block_hash(self) -> BlockHash: ...
    @property
    def slot(self) -> Slot: ...
    @property
    def validators(self) -> ValidatorSet: ...
    @property
    def finality(self) -> FinalityState | None: ...


def compute_finality(
    parent: FinalityParent,
    block: AnyBlock,
    block_hash: BlockHash,
    validators: ValidatorSet,
    params: ChainParams,
) -> FinalityState | None:
    """The finality state after ``block``: its reports' votes counted (a skip block
    carries none but may cross an epoch boundary), the nodes its admin commands
    exclude out of the voter set (block format 20)."""
    if parent.finality is None:
        return None
    votes: tuple[tuple[NodeId, FinalityVote], ...] = ()
    excluded: tuple[NodeId, ...] = ()
    if isinstance(block, Block):
        votes = tuple((r.node, r.vote) for r in block.reports if r.vote is not None)
        excluded = get_admin_exclusions(block)
    return process_finality(
        parent.finality,
        parent.slot,
        parent.block_hash,
        parent.validators,
        block.slot,
        block_hash,
        validators,
        votes,
        params.epoch_length,
        excluded,
    )


def get_command_context(
    parent: BlockState,
    validators: ValidatorSet,
    slot: Slot,
    committee_size: int,
    leaving: frozenset[bytes] = frozenset(),
) -> CommandContext:
    """What a block's commands are checked against (``validators``: after its exits;
    ``leaving``: every node the block removes, exclusions included)."""
    return CommandContext(
        authority=parent.authority,
        validators=validators,
        slot=slot,
        min_validators=committee_size + 1,
        leaving=leaving,
        voters=parent.finality.voters if parent.finality is not None else None,
    )


def apply_block_commands(
    parent: BlockState, block: Block, committee_size: int
) -> tuple[Registry, Authority, ValidatorSet]:
    """Registry, authority and validator set after ``block``: plan, departures, then its
    commands in order. Raises the ValidationError of the first command that does not
    check (``orchestrator/commands.py``)."""
    removed = get_removed_nodes(block)
    registry = apply_block_to_registry(parent.registry, block.slot, block.plan, removed)
    validators = apply_block_to_validator_set(parent.validators, block)
    exits = {e.node for e in block.exits}
    if not block.commands:
        return registry, end_drains(parent.authority, exits), validators
    # An EXCLUDE names a validator of the parent (less the block's exits) or one of its
    # finality voters; the set of every node the block removes keeps MOVEs off them.
    remaining = ValidatorSet(tuple(m for m in parent.validators.members if m.node not in exits))
    leaving = frozenset(bytes(n) for n in removed)
    ctx = get_command_context(parent, remaining, block.slot, committee_size, leaving)
    registry, authority = apply_commands(registry, ctx, block.commands)
    return registry, end_drains(authority, exits), validators


def _get_contributions(block: AnyBlock) -> Iterator[tuple[NodeId, Slot]]:
    """Who contributed to ``block`` (liveness): its producer, its reports' nodes (at the
    report's slot). Not its voters: the attestation is not part of the block's hash, and
    two nodes may hold the same block with different signers (committee members each
    aggregate the skip votes they received), so a state that counted them would differ
    between nodes, and so would its root (``consensus/state_codec.py``) and the plans
    that read ``last_seen``."""
    if isinstance(block, Block):
        yield block.producer, block.slot
        for report in block.reports:
            yield report.node, report.slot


def apply_block(
    parent: BlockState,
    block: AnyBlock,
    block_hash: BlockHash,
    params: ChainParams,
) -> BlockState:
    """The state transition of one validated block."""
    committee_size = params.committee_size
    stall = compute_stall(parent.stall, parent.slot, block.slot)
    if isinstance(block, Block):
        registry, authority, validators = apply_block_commands(parent, block, committee_size)
        registry = apply_reports_to_registry(registry, block.reports)
        return BlockState(
            block_hash=block_hash,
            slot=block.slot,
            seed=compute_block_seed(block.vdf_output),
            validators=validators,
            difficulty=block.difficulty,
            registry=registry,
            reports=merge_reports(
                parent.reports, block.reports, validators, block.slot, get_report_max_age(params)
            ),
            coordinates=compute_coordinates(parent.coordinates, block.reports, validators),
            signers=count_signers(block.signers),
            is_skip=False,
            vdf_group=compute_vdf_group(parent, block.slot, params.vdf_group_slots),
            authority=authority,
            last_seen=compute_last_seen(
                parent.last_seen,
                block.slot,
                _get_contributions(block),
                validators.get_node_ids(),
                params.down_after_slots,
                authority.banned,
                stall,
            ),
            stall=stall,
            departures=compute_departures(
                parent.departures, parent.validators, validators, block.slot
            ),
            finality=compute_finality(parent, block, block_hash, validators, params),
        )
    validators = apply_block_to_validator_set(parent.validators, block)
    registry = apply_block_to_registry(parent.registry, block.slot, (), get_removed_nodes(block))
    return BlockState(
        block_hash=block_hash,
        slot=block.slot,
        seed=compute_skip_seed(parent.seed, block.slot),
        validators=validators,
        # A silent producer may have been too slow for the VDF: ease it by a quarter.
        difficulty=max(1, parent.difficulty * 3 // 4),
        registry=registry,
        # A skip block carries no reports: the child plans on the last known ones.
        reports=merge_reports(
            parent.reports, (), validators, block.slot, get_report_max_age(params)
        ),
        coordinates=compute_coordinates(parent.coordinates, (), validators),
        signers=count_signers(block.signers),
        is_skip=True,
        vdf_group=compute_vdf_group(parent, block.slot, params.vdf_group_slots),
        authority=parent.authority,
        last_seen=compute_last_seen(
            parent.last_seen,
            block.slot,
            _get_contributions(block),
            validators.get_node_ids(),
            params.down_after_slots,
            parent.authority.banned,
            stall,
        ),
        stall=stall,
        departures=compute_departures(parent.departures, parent.validators, validators, block.slot),
        finality=compute_finality(parent, block, block_hash, validators, params),
    )


# --- time and difficulty ---------------------------------------------------------------


def get_slot_start_ms(params: ChainParams, slot: int) -> int:
    return params.genesis_time_ms + slot * params.slot_duration_ms


def get_current_slot(params: ChainParams, now_ms: int) -> Slot:
    if now_ms < params.genesis_time_ms:
        return Slot(0)
    return Slot((now_ms - params.genesis_time_ms) // params.slot_duration_ms)


def get_candidate_deadline_ms(params: ChainParams, slot: int) -> int:
    """2/3 of the slot: votes are aggregated, or the committee turns to a skip block."""
    return get_slot_start_ms(params, slot) + params.slot_duration_ms * 2 // 3


def compute_next_difficulty(params: ChainParams, parent_difficulty: int, elapsed_ms: int) -> int:
    """Deterministic difficulty rule: steer VDF time toward ``vdf_target_bp`` of the slot.

    ``elapsed_ms`` is the block's timestamp minus its slot start: the time the producer
    spent before its candidate was ready, which the VDF dominates. The new difficulty
    scales by target/elapsed, bounded to ±25 % a block so one producer's clock cannot
    swing it, and moves by at least one iteration when it should move at all.
    """
    target = params.slot_duration_ms * params.vdf_target_bp // 10_000
    elapsed = max(1, elapsed_ms)
    wanted = parent_difficulty * target // elapsed
    low, high = parent_difficulty * 3 // 4, parent_difficulty * 5 // 4
    bounded = min(max(wanted, low), high)
    if bounded == parent_difficulty and wanted != parent_difficulty:
        bounded += 1 if wanted > parent_difficulty else -1
    return min(max(bounded, 1), vdf.MAX_ITERATIONS)


# --- roles and plans (memoised: pure functions of the parent state) --------------------


def get_roles(memo: Memo, parent: BlockState, slot: Slot, committee_size: int) -> Roles:
    return memo.get(
        ("roles", parent.block_hash, slot),
        lambda: compute_roles(
            parent.validators.get_public_keys(), parent.seed, slot, committee_size
        ),
    )


def get_node_infos(validators: ValidatorSet) -> tuple[NodeInfo, ...]:
    """The planner's view of the validators, once per validator set object."""
    return validators.get_derived("node-infos", _compute_node_infos)


def _compute_node_infos(validators: ValidatorSet) -> tuple[NodeInfo, ...]:
    return tuple(NodeInfo(m.node, m.labels) for m in validators.members)


def get_plan(
    memo: Memo, params: ChainParams, parent: BlockState, slot: Slot
) -> tuple[PlanEntry, ...]:
    """Algorithm 1 (extended): the plan a block at ``slot`` on ``parent`` must carry."""
    return memo.get(("plan", parent.block_hash, slot), lambda: _compute_plan(params, parent, slot))


def _compute_plan(params: ChainParams, parent: BlockState, slot: Slot) -> tuple[PlanEntry, ...]:
    # The stall this block ends, if it ends one, counts already (liveness.compute_stall).
    stall = compute_stall(parent.stall, parent.slot, slot)
    return compute_plan(
        parent.registry,
        parent.reports,
        get_node_infos(parent.validators),
        slot,
        params.max_migrations_per_slot,
        down=compute_down_nodes(
            parent.last_seen,
            slot,
            params.down_after_slots,
            stall,
            (r.node for r in parent.registry.records if r.node is not None),
        ),
        draining=frozenset(parent.authority.draining),
        quiet=compute_quiet_nodes(parent.last_seen, slot, params.down_after_slots, stall),
        # Known but not validators: left the set (the planner drops validators and the
        # down); the banned do not come back without the admin.
        departed=frozenset(parent.last_seen).difference(parent.authority.banned),
    )
