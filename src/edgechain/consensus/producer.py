"""The producer duty: VDF request, candidate building, vote aggregation.

Algorithm 3, producer case. The producer of slot ``s`` asks for the VDF on the head;
with the result it builds the candidate (the reports it holds, the plan recomputed from
the head, pending inclusions, exits and signed commands), signs it and sends it to the
committee. It aggregates when all votes are in or at the candidate deadline (2/3 of the
slot) and, with a strict majority of the committee, publishes the block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from edgechain.chain.assembly import EMPTY_SIGNATURE, attach_attestation, sign_as_producer
from edgechain.chain.attestation import is_majority
from edgechain.chain.encoding import compute_block_hash, compute_vote_message
from edgechain.chain.model import (
    AddressRecord,
    AnyBlock,
    Block,
    ChainParams,
    ExitRequest,
    InclusionRequest,
    ResourceReport,
)
from edgechain.chain.validation import is_exit_of_current_stay
from edgechain.consensus.addresses import choose_records
from edgechain.consensus.block_validation import check_inclusion_on_parent, get_proof_iterations
from edgechain.consensus.command_pool import CommandPool
from edgechain.consensus.committee import get_committee_ids
from edgechain.consensus.context import EngineContext
from edgechain.consensus.messages import (
    CandidateMsg,
    Outgoing,
    Output,
    Route,
    VdfRequest,
    VoteMsg,
)
from edgechain.consensus.roles import Roles
from edgechain.consensus.state import (
    BlockState,
    compute_next_difficulty,
    compute_vdf_group,
    get_candidate_deadline_ms,
    get_plan,
    get_slot_start_ms,
)
from edgechain.consensus.state_codec import get_state_root
from edgechain.crypto import bls
from edgechain.crypto.hashing import compute_node_id
from edgechain.crypto.vdf import VdfResult
from edgechain.errors import PeerError, RejectReason, ValidationError
from edgechain.types import BlockHash, NodeId, Signature, Slot

Publish = Callable[[AnyBlock, BlockHash, int, Output], None]


@dataclass
class ProducerDuty:
    slot: Slot
    parent: BlockHash
    roles: Roles
    committee_ids: Mapping[NodeId, int]
    candidate: Block | None = None
    candidate_hash: BlockHash | None = None
    claimed: dict[int, list[Signature]] = field(default_factory=dict)
    """Votes as received, by committee index; verified together when aggregating."""
    done: bool = False


def build_candidate(
    ctx: EngineContext,
    params: ChainParams,
    parent: BlockState,
    slot: Slot,
    result: VdfResult,
    now: int,
    *,
    reports: Mapping[NodeId, ResourceReport],
    inclusions: Iterable[InclusionRequest],
    exits: Mapping[NodeId, ExitRequest],
    commands: CommandPool,
    addresses: Mapping[NodeId, AddressRecord] | None = None,
) -> Block:
    """Algorithm 3, producer case: the candidate block built on ``parent`` from the
    reports pooled for ``slot`` and the pending inclusions, exits, commands and address
    records."""
    limit = ctx.config.max_block_items
    chosen_reports = tuple(
        sorted((r for r in reports.values() if r.node in parent.validators), key=lambda r: r.node)
    )
    chosen_inclusions = tuple(
        r
        for r in sorted(inclusions, key=lambda r: r.public_key)
        if compute_node_id(r.public_key) not in parent.validators
        and is_admissible(r, params, parent, slot)
    )[:limit]
    chosen_exits = tuple(
        e
        for _, e in sorted(exits.items())
        if is_exit_of_current_stay(e, parent.validators) and e.slot <= slot
    )[:limit]
    chosen_addresses = choose_records(
        addresses or {}, parent, slot, frozenset(e.node for e in chosen_exits), limit
    )
    timestamp = max(now, get_slot_start_ms(params, slot))
    difficulty = compute_next_difficulty(
        params, parent.difficulty, timestamp - get_slot_start_ms(params, slot)
    )
    unsigned = Block(
        parent=parent.block_hash,
        slot=slot,
        epoch=slot // params.epoch_length,
        producer=ctx.node_id,
        timestamp_ms=timestamp,
        difficulty=difficulty,
        vdf_output=result.output,
        vdf_proof=result.proof,
        state_root=get_state_root(ctx.memo, parent),
        reports=chosen_reports,
        plan=get_plan(ctx.memo, params, parent, slot),
        inclusions=chosen_inclusions,
        exits=chosen_exits,
        commands=(),
        addresses=chosen_addresses,
        producer_signature=EMPTY_SIGNATURE,
        signers=b"",
        aggregate_signature=EMPTY_SIGNATURE,
    )
    chosen_commands = commands.select(parent, unsigned, limit)
    return sign_as_producer(dataclasses.replace(unsigned, commands=chosen_commands), ctx.sk)


def is_admissible(
    req: InclusionRequest, params: ChainParams, parent: BlockState, slot: Slot
) -> bool:
    """Would a block at ``slot`` on ``parent`` admit ``req``
    (``block_validation.check_inclusion_on_parent``)? Its signatures were checked when
    it was pooled."""
    try:
        check_inclusion_on_parent(req, params, parent, slot)
    except ValidationError:
        return False
    return True


class Producer:
    """This node's producer duty for the current slot, if it has one."""

    def __init__(self, ctx: EngineContext, publish: Publish) -> None:
        self.ctx = ctx
        self.publish = publish
        self.duty: ProducerDuty | None = None

    def is_vdf_wanted(self, request: VdfRequest, now: int) -> bool:
        duty = self.duty
        params = self.ctx.params
        return (
            params is not None
            and duty is not None
            and duty.slot == request.slot
            and duty.parent == request.challenge
            and self.ctx.head == request.challenge
            and duty.candidate is None
            and now < get_candidate_deadline_ms(params, duty.slot)
        )

    def start(self, slot: Slot, head: BlockState, roles: Roles, out: Output) -> None:
        """Ask for the VDF on ``head``, unless this slot's duty already has."""
        duty = self.duty
        if (
            duty is not None
            and duty.slot == slot
            and (duty.candidate is not None or duty.parent == head.block_hash)
        ):
            return  # never two candidates for one slot; the VDF is already running
        params = self.ctx.params
        if params is None:
            return  # no genesis yet: no duty either
        committee_ids = get_committee_ids(self.ctx.memo, head, slot, roles)
        self.duty = ProducerDuty(slot, head.block_hash, roles, committee_ids)
        iterations = get_proof_iterations(head.difficulty, self.ctx.config.proof_scale)
        group = compute_vdf_group(head, slot, params.vdf_group_slots)
        out.vdf_requests.append(
            VdfRequest(head.block_hash, head.difficulty, iterations, slot, group)
        )

    def send_candidate(self, duty: ProducerDuty, block: Block, out: Output) -> None:
        duty.candidate = block
        duty.candidate_hash = compute_block_hash(block)
        self.ctx.memo.put_block_hash(block, duty.candidate_hash)
        self.ctx.stats.blocks_produced += 1
        out.messages.append(Outgoing(CandidateMsg(block), Route.DIRECT, tuple(duty.committee_ids)))

    def on_vote(self, vote: VoteMsg, now: int, out: Output) -> None:
        duty = self.duty
        if duty is None or duty.candidate_hash != vote.block_hash or duty.done:
            return  # a late vote for a slot already closed
        index = duty.committee_ids.get(vote.voter)
        if index is None:
            raise PeerError(RejectReason.VOTE_OUTSIDE_COMMITTEE)
        claims = duty.claimed.setdefault(index, [])
        if vote.signature in claims:
            # Harmless (counted once), but only a faulty or hostile voter sends one
            # vote twice over a direct route: counted, not raised.
            self.ctx.stats.peer_errors[RejectReason.DUPLICATE_VOTE] += 1
            return
        if len(claims) >= 2:
            raise PeerError(RejectReason.DOUBLE_VOTE)
        # BLS is deterministic: a second, different signature from one voter means one
        # of the two is forged; both are kept and the aggregation step sorts them out.
        claims.append(vote.signature)
        if len(claims) > 1:
            self.ctx.stats.peer_errors[RejectReason.DOUBLE_VOTE] += 1
        if len(duty.claimed) == len(duty.roles.committee):
            self.finalize(duty, now, out)

    def maybe_finalize(self, now: int, out: Output) -> None:
        """Aggregate at the candidate deadline if not all votes came in before."""
        duty = self.duty
        params = self.ctx.params
        assert params is not None
        if (
            duty is not None
            and not duty.done
            and duty.candidate is not None
            and now >= get_candidate_deadline_ms(params, duty.slot)
        ):
            self.finalize(duty, now, out)

    def get_valid_votes(self, duty: ProducerDuty) -> dict[int, Signature]:
        """One verified signature per voter: a single FastAggregateVerify over the first
        claim of each voter, and one-by-one checks only if that fails."""
        assert duty.candidate_hash is not None
        message = compute_vote_message(duty.candidate_hash)
        committee = duty.roles.committee
        first = {i: sigs[0] for i, sigs in sorted(duty.claimed.items())}
        if first and bls.fast_aggregate_verify(
            [committee[i] for i in first], message, bls.aggregate(list(first.values()))
        ):
            return first
        valid: dict[int, Signature] = {}
        for index, sigs in sorted(duty.claimed.items()):
            for sig in sigs:
                if self.ctx.memo.signatures.verify(committee[index], message, sig):
                    valid[index] = sig
                    break
                self.ctx.stats.peer_errors[RejectReason.BAD_VOTE_SIGNATURE] += 1
        return valid

    def finalize(self, duty: ProducerDuty, now: int, out: Output) -> None:
        """Aggregate the votes; with a committee majority, publish the block."""
        duty.done = True
        candidate = duty.candidate
        committee_size = len(duty.roles.committee)
        if candidate is None or not is_majority(len(duty.claimed), committee_size):
            return
        votes = self.get_valid_votes(duty)
        if not is_majority(len(votes), committee_size):
            return
        block = attach_attestation(candidate, committee_size, votes)
        assert duty.candidate_hash is not None
        self.ctx.memo.put_block_hash(block, duty.candidate_hash)
        self.publish(block, duty.candidate_hash, now, out)
