"""The committee duty: vote for a valid candidate, or sign and assemble the skip block.

Algorithm 3, committee case. A member fully validates the candidate (roles, timestamp
window, difficulty rule, VDF, plan, every signature) and votes once per slot. With no
vote cast by 2/3 of the slot it signs the skip block that excludes the producer and
sends the vote to the committee; whoever collects a majority assembles the skip block
and publishes it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from edgechain.chain.assembly import EMPTY_SIGNATURE, attach_attestation, sign_vote
from edgechain.chain.attestation import is_majority
from edgechain.chain.encoding import compute_block_hash, compute_vote_message
from edgechain.chain.model import AnyBlock, Block, ChainParams, SkipBlock
from edgechain.chain.validator_set import compute_skip_exclusion
from edgechain.consensus.block_validation import ValidationMode, validate_full
from edgechain.consensus.context import EngineContext
from edgechain.consensus.messages import Outgoing, Output, Route, SkipVoteMsg, VoteMsg
from edgechain.consensus.roles import Roles
from edgechain.consensus.state import (
    BlockState,
    Memo,
    get_candidate_deadline_ms,
    get_current_slot,
    get_roles,
)
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import PeerError, RejectReason
from edgechain.types import BlockHash, NodeId, Signature, Slot

RequestSync = Callable[[BlockHash, NodeId, int, Output, int | None], None]
"""``Sync.request_sync``: the missing block, whom to ask, now, the output, and the slot
of what waits for it."""
Publish = Callable[[AnyBlock, BlockHash, int, Output], None]


def get_committee_ids(
    memo: Memo, parent: BlockState, slot: Slot, roles: Roles
) -> Mapping[NodeId, int]:
    """Committee members' node ids to their bitfield index, in committee order."""
    return memo.get(
        ("committee-ids", parent.block_hash, slot),
        lambda: {compute_node_id(pk): i for i, pk in enumerate(roles.committee)},
    )


def get_skip_exclusion(params: ChainParams, parent: BlockState, roles: Roles) -> NodeId:
    """The node a skip block on ``parent`` excludes: the slot's producer (or nobody, at
    the validator floor)."""
    producer = compute_node_id(roles.producer)
    return compute_skip_exclusion(parent.validators, producer, params.committee_size)


def get_skip_hash(memo: Memo, parent: BlockHash, slot: Slot, excluded: NodeId) -> BlockHash:
    return memo.get(
        ("skip-hash", parent, slot, excluded),
        lambda: compute_block_hash(SkipBlock(parent, slot, excluded, b"", EMPTY_SIGNATURE)),
    )


class Committee:
    """Votes cast, skip votes cast and skip votes collected."""

    def __init__(self, ctx: EngineContext, request_sync: RequestSync, publish: Publish) -> None:
        self.ctx = ctx
        self.request_sync = request_sync
        self.publish = publish
        self.mode = ValidationMode(check_attestation=False, proof_scale=ctx.config.proof_scale)
        self.voted: dict[Slot, tuple[BlockHash, NodeId]] = {}
        self.skip_voted: set[Slot] = set()
        self.skip_votes: dict[BlockHash, dict[int, Signature]] = {}

    def on_candidate(self, block: Block, sender: NodeId | None, now: int, out: Output) -> None:
        ctx = self.ctx
        params = ctx.params
        assert params is not None
        block_hash = ctx.memo.get_block_hash(block)
        parent = ctx.get_branch_state(block.parent)
        if parent is None:
            # Unknown: sync it. Known but below the finalized root: never vote for it.
            if sender is not None and block.parent not in ctx.states:
                self.request_sync(block.parent, sender, now, out, block.slot)
            return
        roles = get_roles(ctx.memo, parent, block.slot, params.committee_size)
        index = roles.committee_index(ctx.pk)
        if index is None:
            raise PeerError(RejectReason.CANDIDATE_TO_NON_MEMBER)
        if block.slot != get_current_slot(params, now):
            return  # stale or early: a vote now would be for the wrong slot
        if now >= get_candidate_deadline_ms(params, block.slot):
            return  # too late: we have turned (or will turn) to the skip block
        previous = self.voted.get(block.slot)
        if previous is not None or block.slot in self.skip_voted:
            # One vote per slot. Two candidates from *one* producer is equivocation; from
            # two producers it is two heads (the producer of each branch is elected).
            if previous is not None and previous[0] != block_hash and previous[1] == block.producer:
                raise PeerError(RejectReason.EQUIVOCATING_PRODUCER)
            return
        validate_full(ctx.memo, params, parent, block, block_hash, self.mode)
        self.voted[block.slot] = (block_hash, block.producer)
        ctx.stats.votes_sent += 1
        vote = VoteMsg(block_hash, block.slot, ctx.node_id, sign_vote(block_hash, ctx.sk))
        out.messages.append(Outgoing(vote, Route.DIRECT, (block.producer,)))

    def maybe_skip_vote(
        self, slot: Slot, head: BlockState, roles: Roles, now: int, out: Output
    ) -> None:
        """A member with no vote cast by the candidate deadline signs the skip block."""
        params = self.ctx.params
        assert params is not None
        deadline = get_candidate_deadline_ms(params, slot)
        if now >= deadline and slot not in self.voted and slot not in self.skip_voted:
            index = roles.committee_index(self.ctx.pk)
            if index is not None:
                self.send_skip_vote(slot, head, roles, index, now, out)

    def send_skip_vote(
        self, slot: Slot, head: BlockState, roles: Roles, index: int, now: int, out: Output
    ) -> None:
        """Algorithm 3, committee case: no valid candidate by 2/3 of the slot."""
        ctx = self.ctx
        params = ctx.params
        assert params is not None
        self.skip_voted.add(slot)
        excluded = get_skip_exclusion(params, head, roles)
        skip_hash = get_skip_hash(ctx.memo, head.block_hash, slot, excluded)
        vote = SkipVoteMsg(
            head.block_hash, slot, excluded, ctx.node_id, sign_vote(skip_hash, ctx.sk)
        )
        ctx.stats.skip_votes_sent += 1
        members = get_committee_ids(ctx.memo, head, slot, roles)
        others = tuple(node for node in members if node != ctx.node_id)
        out.messages.append(Outgoing(vote, Route.DIRECT, others))
        self.collect_skip_vote(vote, roles, index, skip_hash, now, out)

    def on_skip_vote(self, vote: SkipVoteMsg, sender: NodeId | None, now: int, out: Output) -> None:
        ctx = self.ctx
        params = ctx.params
        assert params is not None
        parent = ctx.get_branch_state(vote.parent)
        if parent is None:
            if sender is not None and vote.parent not in ctx.states:
                self.request_sync(vote.parent, sender, now, out, vote.slot)
            return
        roles = get_roles(ctx.memo, parent, vote.slot, params.committee_size)
        if vote.excluded != get_skip_exclusion(params, parent, roles):
            raise PeerError(RejectReason.SKIP_VOTE_WRONG_PRODUCER)
        voter_index = get_committee_ids(ctx.memo, parent, vote.slot, roles).get(vote.voter)
        if voter_index is None:
            raise PeerError(RejectReason.VOTE_OUTSIDE_COMMITTEE)
        skip_hash = get_skip_hash(ctx.memo, vote.parent, vote.slot, vote.excluded)
        if not ctx.memo.signatures.verify(
            roles.committee[voter_index], compute_vote_message(skip_hash), vote.signature
        ):
            raise PeerError(RejectReason.BAD_VOTE_SIGNATURE)
        self.collect_skip_vote(vote, roles, voter_index, skip_hash, now, out)

    def collect_skip_vote(
        self,
        vote: SkipVoteMsg,
        roles: Roles,
        index: int,
        skip_hash: BlockHash,
        now: int,
        out: Output,
    ) -> None:
        votes = self.skip_votes.setdefault(skip_hash, {})
        known = votes.get(index)
        if known is not None and known != vote.signature:
            raise PeerError(RejectReason.DOUBLE_VOTE)
        votes[index] = vote.signature
        if skip_hash in self.ctx.states or not is_majority(len(votes), len(roles.committee)):
            return
        unsigned = SkipBlock(vote.parent, vote.slot, vote.excluded, b"", EMPTY_SIGNATURE)
        skip = attach_attestation(unsigned, len(roles.committee), votes)
        self.ctx.memo.put_block_hash(skip, skip_hash)
        self.ctx.stats.skip_blocks_assembled += 1
        self.publish(skip, skip_hash, now, out)

    def prune(self, state: BlockState) -> None:
        """Forget votes for slots long behind the head (``state``)."""
        for old in [s for s in self.voted if s < state.slot - 64]:
            del self.voted[old]
        self.skip_voted = {s for s in self.skip_voted if s >= state.slot - 64}
