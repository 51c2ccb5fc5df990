"""Byzantine behaviours for the simulator, as subclasses of the honest engine.

Each overrides one step of the honest protocol and otherwise behaves honestly, so a
test can assert the specific defence: a producer with an invalid VDF, a wrong plan or a
bad signature gets no votes (and a skip block excludes it); an equivocating producer's
second candidate is refused; a double vote or a vote from outside the committee is
counted and ignored; a representative that drops every report it should relay loses
nobody's report for good, since members fall back to the producer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from edgechain.chain.assembly import sign_as_producer, sign_vote
from edgechain.chain.encoding import compute_block_hash
from edgechain.chain.model import Block, ChainParams, Genesis, PlanAction, PlanEntry
from edgechain.consensus.engine import ConsensusEngine, EngineConfig, ProducerDuty
from edgechain.consensus.messages import (
    CandidateMsg,
    Message,
    Outgoing,
    Output,
    Route,
    SkipVoteMsg,
    VoteMsg,
)
from edgechain.consensus.reports import ReportRelay
from edgechain.consensus.state import BlockState, Memo, get_current_slot, get_roles
from edgechain.crypto.vdf import VdfResult
from edgechain.testing import Identity
from edgechain.types import AppId, BlockHash, NodeId, SecretKey, Signature, Slot


class InvalidVdfProducer(ConsensusEngine):
    """Produces candidates whose VDF output is not the evaluation of the parent."""

    def _build_candidate(
        self, params: ChainParams, parent: BlockState, slot: Slot, result: VdfResult, now: int
    ) -> Block:
        block = super()._build_candidate(params, parent, slot, result, now)
        forged = bytearray(block.vdf_output)
        forged[-1] ^= 0x01
        return sign_as_producer(dataclasses.replace(block, vdf_output=bytes(forged)), self.sk)


class WrongPlanProducer(ConsensusEngine):
    """Places an app that does not exist on itself: a plan nobody else computes."""

    def _build_candidate(
        self, params: ChainParams, parent: BlockState, slot: Slot, result: VdfResult, now: int
    ) -> Block:
        block = super()._build_candidate(params, parent, slot, result, now)
        bogus = PlanEntry(PlanAction.PLACE, AppId(b"\xee" * 32), b"", self.node_id)
        return sign_as_producer(dataclasses.replace(block, plan=(*block.plan, bogus)), self.sk)


class BadSignatureProducer(ConsensusEngine):
    """Signs its candidates with the wrong message."""

    def _build_candidate(
        self, params: ChainParams, parent: BlockState, slot: Slot, result: VdfResult, now: int
    ) -> Block:
        block = super()._build_candidate(params, parent, slot, result, now)
        return dataclasses.replace(block, producer_signature=sign_vote(block.parent, self.sk))


class EquivocatingProducer(ConsensusEngine):
    """Sends two different, individually valid candidates for one slot."""

    def _send_candidate(self, duty: ProducerDuty, result: VdfResult, now: int, out: Output) -> None:
        super()._send_candidate(duty, result, now, out)
        params = self.params
        assert params is not None and duty.candidate is not None
        # Same content, one millisecond later: still valid, another hash.
        later = min(now + 1, duty.candidate.timestamp_ms + 1)
        twin = self._build_candidate(params, self.states[duty.parent], duty.slot, result, later)
        if compute_block_hash(twin) != duty.candidate_hash:
            out.messages.append(
                Outgoing(CandidateMsg(twin), Route.DIRECT, tuple(duty.committee_ids))
            )


class DoubleVoter(ConsensusEngine):
    """Votes twice for each candidate, the second time with a forged signature."""

    def on_message(self, msg: Message, sender: NodeId | None, now_ms: int) -> Output:
        out = super().on_message(msg, sender, now_ms)
        extra = []
        for outgoing in out.messages:
            vote = outgoing.message
            if isinstance(vote, VoteMsg):
                forged = dataclasses.replace(
                    vote, signature=sign_vote(BlockHash(vote.block_hash[::-1]), self.sk)
                )
                extra.append(dataclasses.replace(outgoing, message=forged))
        out.messages.extend(extra)
        return out


class OutsideVoter(ConsensusEngine):
    """Sends skip votes every slot to every committee, member or not."""

    def on_tick(self, now_ms: int) -> Output:
        out = super().on_tick(now_ms)
        params, head = self.params, self.get_head_state()
        if params is None or head is None:
            return out
        slot = get_current_slot(params, now_ms)
        if slot < 1 or head.slot >= slot:
            return out
        roles = get_roles(self.memo, head, slot, params.committee_size)
        if roles.committee_index(self.pk) is not None:
            return out
        excluded = self._get_skip_exclusion(head, roles)
        skip_hash = self._get_skip_hash(head.block_hash, slot, excluded)
        vote = SkipVoteMsg(
            head.block_hash, slot, excluded, self.node_id, sign_vote(skip_hash, self.sk)
        )
        members = tuple(self._get_committee_ids(head, slot, roles))
        out.messages.append(Outgoing(vote, Route.DIRECT, members))
        return out


class DroppingRelay(ReportRelay):
    """Relays nothing: every batch a representative would forward, and every pool it
    would hand on to another producer, goes nowhere."""

    def maybe_forward_reports(self, now: int, out: Output) -> None:
        super().maybe_forward_reports(now, Output())

    def hand_over_pools(self, now: int, out: Output) -> None:
        super().hand_over_pools(now, Output())


class ReportDropper(ConsensusEngine):
    """A representative that drops every report it is sent to relay: the silent or
    byzantine representative the members' direct fallback must survive. It still pools
    what it receives for a slot it produces itself (the honest relay's own decision), so
    the fault measured is the relay's alone: a producer that leaves reports out delays
    them to the next producer's block, whatever the relay does."""

    def __init__(
        self,
        sk: SecretKey,
        config: EngineConfig,
        *,
        genesis: Genesis | None = None,
        genesis_signature: Signature | None = None,
        memo: Memo | None = None,
    ) -> None:
        super().__init__(
            sk, config, genesis=genesis, genesis_signature=genesis_signature, memo=memo
        )
        self.reports = DroppingRelay(self.ctx)


BEHAVIOURS: tuple[type[ConsensusEngine], ...] = (
    InvalidVdfProducer,
    WrongPlanProducer,
    BadSignatureProducer,
    EquivocatingProducer,
    DoubleVoter,
    OutsideVoter,
)


def make_byzantine_factory(
    assignment: dict[int, type[ConsensusEngine]],
) -> Callable[[int, Identity, EngineConfig, Memo], ConsensusEngine]:
    def factory(index: int, ident: Identity, config: EngineConfig, memo: Memo) -> ConsensusEngine:
        return assignment[index](ident.sk, config, memo=memo)

    return factory
