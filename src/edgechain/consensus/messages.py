"""Consensus messages and the engine's outputs (sans-I/O, in the style of aioquic).

The engine never sends anything itself: every input call returns an :class:`Output`
with messages to send (each with a destination), the next time it wants to be woken,
VDF evaluations to run, and events for the layers above (accepted blocks, migrations
to execute). ``node.py`` turns these into datagrams and frames; ``sim/`` into events on
a virtual clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgechain.chain.model import (
    AddressRecord,
    AnyBlock,
    AppSpec,
    Block,
    Checkpoint,
    ExitRequest,
    FinalityVote,
    Genesis,
    InclusionRequest,
    PlanEntry,
    ResourceReport,
    SignedCommand,
)
from edgechain.errors import RejectReason
from edgechain.orchestrator.fleet import ChainStep
from edgechain.types import BlockHash, NodeId, Signature, Slot

# --- messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateMsg:
    """Producer → committee: the signed, not yet attested candidate (Algorithm 3)."""

    block: Block
    block_hash: BlockHash | None = field(default=None, compare=False, repr=False)
    """The hash the wire decoder computed from the received bytes (no re-encoding:
    ``decode_block_with_hash``); None for a block built in memory."""


@dataclass(frozen=True)
class VoteMsg:
    """Committee member → producer: a BLS signature over the candidate's hash."""

    block_hash: BlockHash
    slot: Slot
    voter: NodeId
    signature: Signature


@dataclass(frozen=True)
class SkipVoteMsg:
    """Committee member → committee: a vote for the deterministic skip block of a slot."""

    parent: BlockHash
    slot: Slot
    excluded: NodeId
    voter: NodeId
    signature: Signature


@dataclass(frozen=True)
class BlockMsg:
    """Gossip: an attested block or skip block."""

    block: AnyBlock
    block_hash: BlockHash | None = field(default=None, compare=False, repr=False)
    """The hash the wire decoder computed from the received bytes (no re-encoding:
    ``decode_block_with_hash``); None for a block built in memory."""


@dataclass(frozen=True)
class ReportMsg:
    """Node → its cluster representative, or representative → producer (a batch)."""

    reports: tuple[ResourceReport, ...]


@dataclass(frozen=True)
class InclusionMsg:
    """Gossip: a joining node's signed inclusion request (paper §4 step 7)."""

    request: InclusionRequest


@dataclass(frozen=True)
class ExitMsg:
    """Gossip: a validator's signed exit request."""

    request: ExitRequest


@dataclass(frozen=True)
class AddressMsg:
    """Gossip: a validator's signed new address (``consensus/addresses.py``)."""

    record: AddressRecord


@dataclass(frozen=True)
class CommandMsg:
    """Gossip: a signed app or authority command submitted through some node's API."""

    command: SignedCommand


@dataclass(frozen=True)
class GenesisMsg:
    """Gossip: the genesis block, signed by the genesis key (paper §4 step 6)."""

    genesis: Genesis
    signature: Signature


@dataclass(frozen=True)
class SyncRequestMsg:
    """Ask a peer for ``want`` and up to ``limit`` of its ancestors."""

    want: BlockHash
    limit: int


HEAD_WANT = BlockHash(bytes(32))
"""``SyncRequestMsg.want`` that asks for the responder's head block and the genesis
(a node that has no chain yet and knows no block hash: ``Joining.ask_seeds_for_chain``)."""


@dataclass(frozen=True)
class SyncResponseMsg:
    """Blocks oldest first, each the parent of the next."""

    blocks: tuple[AnyBlock, ...]
    genesis: GenesisMsg | None = None
    """Included when the blocks reach back to genesis, for a node that has none yet."""
    hashes: tuple[BlockHash, ...] = field(default=(), compare=False, repr=False)
    """The blocks' hashes as the wire decoder computed them (``BlockMsg.block_hash``);
    empty for blocks built in memory."""


@dataclass(frozen=True)
class ForwardSyncRequestMsg:
    """Checkpoint sync: ask a peer for up to ``limit`` blocks of its chain that follow
    ``after``, oldest first (``consensus/checkpoint_sync.py``)."""

    after: BlockHash
    limit: int


@dataclass(frozen=True)
class ForwardSyncResponseMsg:
    """The blocks of the responder's chain after ``after``, oldest first, each the
    parent of the next; fewer than asked for once its head is reached (none when
    ``after`` is not on its chain)."""

    after: BlockHash
    blocks: tuple[AnyBlock, ...]
    hashes: tuple[BlockHash, ...] = field(default=(), compare=False, repr=False)
    """As ``SyncResponseMsg.hashes``."""


@dataclass(frozen=True)
class StateRequestMsg:
    """Checkpoint sync: ask a peer for the state after ``block``."""

    block: BlockHash


@dataclass(frozen=True)
class StateResponseMsg:
    """The canonical encoding of the state after ``block`` (``consensus/state_codec``),
    empty when the responder does not hold it."""

    block: BlockHash
    state: bytes


Message = (
    CandidateMsg
    | VoteMsg
    | SkipVoteMsg
    | BlockMsg
    | ReportMsg
    | InclusionMsg
    | ExitMsg
    | AddressMsg
    | CommandMsg
    | GenesisMsg
    | SyncRequestMsg
    | SyncResponseMsg
    | ForwardSyncRequestMsg
    | ForwardSyncResponseMsg
    | StateRequestMsg
    | StateResponseMsg
)

# --- outputs -------------------------------------------------------------------------


class Route(enum.Enum):
    DIRECT = "direct"
    """To the nodes listed in ``Outgoing.to``."""
    GOSSIP = "gossip"
    """To every node, through the gossip layer (de-duplicated, fanned out)."""


@dataclass(frozen=True)
class Outgoing:
    message: Message
    route: Route
    to: tuple[NodeId, ...] = ()


@dataclass(frozen=True)
class VdfRequest:
    """Evaluate the VDF; feed the result back with ``on_vdf_result``.

    ``difficulty`` is the chain's iteration count (what the evaluation *costs*);
    ``iterations`` what the proof must use (equal on a real node; the simulator may
    scale it down and charge its clock for ``difficulty``).
    """

    challenge: BlockHash
    difficulty: int
    iterations: int
    slot: Slot
    group: BlockHash
    """The group hash the evaluation runs in (``crypto/vdf.py``)."""


@dataclass(frozen=True)
class BlockAccepted:
    block_hash: BlockHash
    slot: Slot
    skip: bool
    signers: int
    block: AnyBlock
    """The block itself: by the time the event is read, pruning may have dropped it
    from the engine's memory (a sync burst that runs past finality)."""


@dataclass(frozen=True)
class HeadChanged:
    old: BlockHash
    new: BlockHash
    reverted: tuple[BlockHash, ...]
    applied: tuple[BlockHash, ...]


@dataclass(frozen=True)
class MigrationOrder:
    """A plan entry of an accepted block that involves this node (as origin or target)."""

    block_hash: BlockHash
    slot: Slot
    entry: PlanEntry
    spec: AppSpec | None


@dataclass(frozen=True)
class GenesisCreated:
    genesis_hash: BlockHash


@dataclass(frozen=True)
class PeerRejected:
    """A peer's input that failed a check; counted, never fatal."""

    reason: RejectReason
    sender: NodeId | None


@dataclass(frozen=True)
class ArchiveSyncWanted:
    """A peer asked for blocks up to ``want`` that memory no longer holds (pruned below
    finality): the node answers from its store, oldest first, at most ``limit``."""

    want: BlockHash
    limit: int
    sender: NodeId


@dataclass(frozen=True)
class ArchiveForwardWanted:
    """A peer follows the chain forward from ``after``, which memory no longer holds:
    the node answers from its store's finalized chain (``ForwardSyncResponseMsg``)."""

    after: BlockHash
    limit: int
    sender: NodeId


@dataclass(frozen=True)
class BlocksFollowed:
    """Checkpoint sync checked these blocks (oldest first, each with its hash) with
    the light transition: the node stores them, so it can serve history like any
    other node."""

    blocks: tuple[tuple[BlockHash, AnyBlock], ...]


@dataclass(frozen=True)
class CheckpointInstalled:
    """Checkpoint sync adopted a fetched state that checked against its root: the
    chain now continues from ``anchor`` (at ``slot``), after ``followed`` blocks
    were followed with the light transition."""

    anchor: BlockHash
    slot: Slot
    followed: int


@dataclass(frozen=True)
class IdentityClash:
    """A valid block carries a report signed with this node's key that this process
    did not sign: another process holds the key (``consensus/own_reports.py``)."""

    block: BlockHash
    block_slot: Slot
    report_slot: Slot


@dataclass(frozen=True)
class AdmissionRefused:
    """The chain would refuse this node's own inclusion request, for ``reason``
    (``detail``): no ticket or enrollment token on a permissioned chain, one expired or
    revoked, the node banned. Told when the problem starts or changes; the node stops
    sending the request until it is gone (``consensus/joining.py``)."""

    reason: RejectReason
    detail: str


@dataclass(frozen=True)
class LastVoteChanged:
    """This node signed a new finality vote: persist it before sending anything else
    (``consensus/finality_votes.py``)."""

    vote: FinalityVote


@dataclass(frozen=True)
class FinalityAdvanced:
    """The head chain finalized a later checkpoint; the chain below it was pruned from
    memory (``consensus/pruning.py``)."""

    finalized: Checkpoint
    slot: Slot
    pruned_blocks: int
    finalized_blocks: tuple[ChainStep, ...]
    """The blocks this advance finalized, oldest first: the head chain after the
    previously finalized block (exclusive; the genesis at the first advance) up to
    ``finalized.block`` (inclusive), each with its hash and its parent's registry.
    Collected before pruning, so the node can keep what it needs of them (the apps'
    history, ``node/events.py``) after memory has dropped them."""


Event = (
    BlockAccepted
    | HeadChanged
    | MigrationOrder
    | GenesisCreated
    | PeerRejected
    | AdmissionRefused
    | LastVoteChanged
    | IdentityClash
    | FinalityAdvanced
    | ArchiveSyncWanted
    | ArchiveForwardWanted
    | BlocksFollowed
    | CheckpointInstalled
)


@dataclass
class Output:
    messages: list[Outgoing] = field(default_factory=list)
    vdf_requests: list[VdfRequest] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    next_wakeup_ms: int | None = None

    def extend(self, other: Output) -> None:
        self.messages.extend(other.messages)
        self.vdf_requests.extend(other.vdf_requests)
        self.events.extend(other.events)
        self.next_wakeup_ms = _earliest(self.next_wakeup_ms, other.next_wakeup_ms)


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
