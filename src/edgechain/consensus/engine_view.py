"""The consensus engine's parts' state, read as the engine's own attributes.

``ConsensusEngine`` (``engine.py``) coordinates one part per job; the node, its API, the
simulator and the tests read their state through the engine (``engine.head``,
``engine.voted``, ``engine.orphans``, ...). Those read-throughs live here, so that the
engine's module holds what the engine does.
"""

from __future__ import annotations

from edgechain.chain.forkchoice import ForkChoice
from edgechain.chain.model import (
    AnyBlock,
    ChainParams,
    ExitRequest,
    Genesis,
    InclusionRequest,
    ResourceReport,
)
from edgechain.consensus.acceptance import BlockAcceptance
from edgechain.consensus.block_validation import ValidationMode
from edgechain.consensus.committee import Committee
from edgechain.consensus.context import EngineContext, LocalUsage
from edgechain.consensus.joining import Joining
from edgechain.consensus.messages import GenesisMsg
from edgechain.consensus.producer import Producer, ProducerDuty
from edgechain.consensus.reports import ReportRelay
from edgechain.consensus.state import BlockState
from edgechain.consensus.sync import Pending, Sync
from edgechain.errors import ValidationError
from edgechain.types import BlockHash, NodeId, Signature, Slot


class EngineView:
    """Read-throughs to the parts' state (a base of ``ConsensusEngine``, which sets the
    parts)."""

    ctx: EngineContext
    acceptance: BlockAcceptance
    committee: Committee
    joining: Joining
    producer: Producer
    reports: ReportRelay
    sync: Sync

    # --- the parts' state, as the engine's attributes ----------------------------------

    @property
    def genesis(self) -> Genesis | None:
        return self.ctx.genesis

    @property
    def genesis_msg(self) -> GenesisMsg | None:
        return self.ctx.genesis_msg

    @property
    def params(self) -> ChainParams | None:
        return self.ctx.params

    @property
    def fork(self) -> ForkChoice | None:
        return self.ctx.fork

    @property
    def head(self) -> BlockHash | None:
        return self.ctx.head

    @property
    def states(self) -> dict[BlockHash, BlockState]:
        return self.ctx.states

    @property
    def blocks(self) -> dict[BlockHash, AnyBlock]:
        return self.ctx.blocks

    @property
    def mode(self) -> ValidationMode:
        return self.acceptance.mode

    @property
    def candidate_mode(self) -> ValidationMode:
        return self.committee.mode

    @property
    def own_request(self) -> InclusionRequest:
        return self.joining.own_request

    @property
    def pending_inclusions(self) -> dict[bytes, InclusionRequest]:
        return self.joining.pending_inclusions

    @property
    def pending_exits(self) -> dict[NodeId, ExitRequest]:
        return self.joining.pending_exits

    def set_seeds(self, node_ids: list[NodeId]) -> None:
        """The seeds that answered the node's pings: asked for the chain before genesis."""
        self.joining.seed_ids = list(node_ids)

    @property
    def leaving(self) -> bool:
        return self.joining.leaving

    @property
    def last_inclusion_sent_ms(self) -> int | None:
        return self.joining.last_inclusion_sent_ms

    @property
    def admission_problem(self) -> ValidationError | None:
        """Why the chain would refuse our own inclusion request, as last checked."""
        return self.joining.admission_problem

    @property
    def duty(self) -> ProducerDuty | None:
        return self.producer.duty

    @property
    def voted(self) -> dict[Slot, tuple[BlockHash, NodeId]]:
        return self.committee.voted

    @property
    def skip_voted(self) -> set[Slot]:
        return self.committee.skip_voted

    @property
    def skip_votes(self) -> dict[BlockHash, dict[int, Signature]]:
        return self.committee.skip_votes

    @property
    def local_usage(self) -> LocalUsage:
        return self.reports.local_usage

    @property
    def report_pool(self) -> dict[Slot, dict[NodeId, ResourceReport]]:
        return self.reports.report_pool

    @property
    def unverified_pool(self) -> dict[Slot, dict[NodeId, ResourceReport]]:
        return self.reports.unverified_pool

    @property
    def forward_buffer(self) -> dict[Slot, dict[NodeId, ResourceReport]]:
        return self.reports.forward_buffer

    @property
    def forwarded(self) -> set[Slot]:
        return self.reports.forwarded

    @property
    def last_reported_slot(self) -> int:
        return self.reports.last_reported_slot

    @property
    def orphans(self) -> dict[BlockHash, list[Pending]]:
        return self.sync.orphans

    @property
    def orphan_count(self) -> int:
        return self.sync.orphan_count

    @property
    def held(self) -> list[Pending]:
        return self.sync.held

    @property
    def sync_requested(self) -> dict[BlockHash, tuple[int, int]]:
        return self.sync.sync_requested

    # --- queries -----------------------------------------------------------------------

    def get_head_state(self) -> BlockState | None:
        return self.ctx.get_head_state()

    def is_validator(self) -> bool:
        return self.ctx.is_validator()

    def get_chain(self, upto: BlockHash | None = None) -> list[BlockHash]:
        """Hashes from genesis (exclusive) to ``upto`` (default: head), oldest first."""
        return self.ctx.get_chain(upto)
