"""What a node keeps of what its engine did: the store, the accepted-blocks log, log lines.

:class:`EventRecorder` writes accepted blocks and the head to the SQLite store (not
while the node replays that store) and the apps' history in the blocks finality
advances over (replayed or not), keeps the recent accepted blocks the API serves
(``GET /blocks``) and logs each event as a JSON line. :func:`log_duty` logs the
producer's and committee's outgoing actions. Together they let every skip block be
explained from the logs (ARCHITECTURE.md, "Real node"). Acting on an event (starting
or migrating apps) is the node's, not this module's.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.attestation import count_signers
from edgechain.chain.encoding import encode_block, encode_genesis
from edgechain.chain.model import Block, SkipBlock
from edgechain.chain.store.app_history import AppEventRecord
from edgechain.chain.store.block_store import BlockStore
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import (
    HEAD_WANT,
    AdmissionRefused,
    BlockAccepted,
    BlockMsg,
    BlocksFollowed,
    CandidateMsg,
    CheckpointInstalled,
    FinalityAdvanced,
    GenesisCreated,
    HeadChanged,
    LastVoteChanged,
    MigrationOrder,
    Outgoing,
    PeerRejected,
    Route,
    SkipVoteMsg,
    SyncRequestMsg,
    SyncResponseMsg,
    VoteMsg,
)
from edgechain.errors import RejectReason
from edgechain.node.archive import put_finalized_chain, put_followed_blocks, put_last_vote
from edgechain.node.clock import NodeClock
from edgechain.node.report_times import ReportTimes
from edgechain.node.vote_file import StoredVote, write_vote_file
from edgechain.orchestrator.fleet import HistoryEvent, compute_block_history
from edgechain.telemetry import logs
from edgechain.types import AppId, NodeId, Slot

log = logging.getLogger("edgechain.node")

MAX_ACCEPTED_LOG = 4_096
"""Blocks kept for ``GET /blocks`` (about an hour of 1 s slots). 20,000 made the log a
linear term in a node's RSS for five hours at 1 s slots (issue 13's flat memory)."""


@dataclass
class AcceptedBlock:
    hash: str
    slot: int
    skip: bool
    signers: int
    producer: str | None
    excluded: str | None
    accepted_ms: int
    reports_due: int | None = None
    """Full blocks accepted live (not replayed): the reports due for the slot, how many
    of those it carries, and, for a block we produced, each carried report's time to
    reach us (``node/report_times.py``)."""
    reports_due_carried: int | None = None
    report_to_producer_ms: tuple[int, ...] | None = None


class EventRecorder:
    """Records the engine's events in ``store``, in :attr:`accepted` and in the log;
    ``accepted_ms`` is read from ``clock``, the node's; the report figures of a block
    from ``report_times``."""

    def __init__(
        self,
        store: BlockStore,
        clock: NodeClock,
        report_times: ReportTimes,
        vote_path: Path | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.report_times = report_times
        self.vote_path = vote_path
        """Where the last finality vote is kept outside the store (``node/vote_file.py``;
        None: in the store alone)."""
        self.accepted: deque[AcceptedBlock] = deque(maxlen=MAX_ACCEPTED_LOG)
        """Blocks accepted (any branch), oldest first; replayed ones too."""

    def record(self, engine: ConsensusEngine, event: object, *, replaying: bool) -> None:
        """Record ``event``; ``replaying``: it comes from the store, not written again."""
        if isinstance(event, BlockAccepted):
            block = event.block
            weight = event.signers
            if not replaying:
                self.store.put_block(
                    event.block_hash, block.parent, block.slot, weight, encode_block(block)
                )
            params = engine.params  # known once a block is accepted
            reports = (
                self.report_times.on_block(
                    block, engine.states.get(block.parent), params.report_interval_slots
                )
                if isinstance(block, Block) and not replaying and params is not None
                else None
            )
            self.accepted.append(
                AcceptedBlock(
                    hash=event.block_hash.hex(),
                    slot=event.slot,
                    skip=event.skip,
                    signers=event.signers,
                    producer=block.producer.hex() if isinstance(block, Block) else None,
                    excluded=block.excluded.hex() if isinstance(block, SkipBlock) else None,
                    accepted_ms=self.clock.now_ms(),
                    reports_due=reports.reports_due if reports else None,
                    reports_due_carried=reports.reports_due_carried if reports else None,
                    report_to_producer_ms=reports.report_to_producer_ms if reports else None,
                )
            )
            logs.info(
                log,
                "block accepted",
                slot=event.slot,
                hash=event.block_hash.hex()[:16],
                skip=event.skip,
                signers=event.signers,
            )
        elif isinstance(event, HeadChanged):
            if not replaying:
                self.store.set_head(event.new)
            if event.reverted:
                logs.info(log, "reorg", reverted=len(event.reverted), applied=len(event.applied))
        elif isinstance(event, GenesisCreated):
            genesis_msg = engine.genesis_msg
            if genesis_msg is not None and self.store.get_genesis() is None:
                self.store.put_genesis(event.genesis_hash, encode_genesis(genesis_msg.genesis))
                self.store.put_meta("genesis_signature", genesis_msg.signature)
            logs.info(log, "genesis", hash=event.genesis_hash.hex()[:16])
        elif isinstance(event, MigrationOrder):
            logs.info(
                log,
                "migration order",
                app=event.entry.app.hex()[:16],
                action=event.entry.action.name,
                slot=event.slot,
            )
        elif isinstance(event, LastVoteChanged):
            genesis = engine.ctx.get_genesis_hash()
            if self.vote_path is not None and genesis is not None:
                write_vote_file(self.vote_path, StoredVote(genesis, event.vote))
            put_last_vote(self.store, event.vote)
        elif isinstance(event, FinalityAdvanced):
            # Written while replaying too: the rows are keyed by (block, seq), so a
            # replay rewrites nothing, and it repairs what a kill between storing the
            # finalizing block and this write lost, or a store migrated from schema 1
            # (no history): a restart re-finalizes every epoch from the genesis on.
            put_finalized_history(self.store, event)
            put_finalized_chain(self.store, engine.ctx, event)
            logs.info(
                log,
                "finalized",
                epoch=event.finalized.epoch,
                slot=event.slot,
                hash=event.finalized.block.hex()[:16],
                pruned=event.pruned_blocks,
            )
        elif isinstance(event, BlocksFollowed):
            put_followed_blocks(self.store, event)
        elif isinstance(event, CheckpointInstalled):
            logs.info(
                log,
                "checkpoint installed",
                slot=event.slot,
                hash=event.anchor.hex()[:16],
                followed=event.followed,
            )
        elif isinstance(event, PeerRejected):
            logs.debug(log, "peer input rejected", reason=event.reason)
        elif isinstance(event, AdmissionRefused):
            logs.warning(
                log,
                "cannot join: the chain would refuse this node's inclusion request",
                reason=event.reason,
                detail=event.detail,
                hint=get_admission_hint(event.reason),
            )


def get_admission_hint(reason: RejectReason) -> str:
    """What the operator of a node the chain would not admit can do."""
    if reason is RejectReason.BANNED_NODE:
        return "the admin excluded this node's key: only a new key (a new data directory) joins"
    if reason is RejectReason.BAD_ADMISSION_TICKET:
        return (
            "start it with --ticket (`edgechain admin ticket` for its public key) or "
            "--enrollment-token-file (`edgechain admin enroll`); it follows the chain "
            "meanwhile and asks again once the problem is gone"
        )
    return "it follows the chain meanwhile and asks again once the problem is gone"


def put_finalized_history(store: BlockStore, event: FinalityAdvanced) -> int:
    """Store what the blocks ``event`` finalized did to the apps (memory forgets those
    blocks, ``consensus/pruning.py``); return how many events were new."""
    records = [
        AppEventRecord(
            app=app,
            block=history.block,
            seq=seq,
            slot=Slot(history.slot),
            kind=history.kind,
            node=history.node,
            origin=history.origin,
            signer=history.signer,
            version=history.version,
        )
        for step in event.finalized_blocks
        for seq, (app, history) in enumerate(compute_block_history(*step))
    ]
    return store.put_app_events(records)


def get_stored_app_history(store: BlockStore, app: AppId) -> list[HistoryEvent]:
    """The history of ``app`` in the finalized blocks ``put_finalized_history`` stored,
    in chain order."""
    return [
        HistoryEvent(
            slot=record.slot,
            block=record.block,
            kind=record.kind,
            node=record.node,
            origin=record.origin,
            signer=record.signer,
            version=record.version,
        )
        for record in store.get_app_events(app)
    ]


def _get_peer_names(outgoing: Outgoing) -> list[str]:
    """The recipients as the logs name nodes: the first 16 hex digits of the id (built
    only for a message that is logged: ``log_duty`` sees every message a node sends)."""
    return [peer.hex()[:16] for peer in outgoing.to]


def log_duty(outgoing: Outgoing, node_id: NodeId) -> None:
    """Producer and committee actions, so a skip block can be explained from logs; and
    a joiner's asks for the chain and a seed's answers with the genesis, so a late
    genesis can be (late joiners of a 100-node run waited 60-100 s for it from seeds
    that answered their pings, issue 13); and the sync asks and answers after it, so a
    slow catch-up can be (a joiner accepted block 1 a minute after the genesis). All
    are rare: one ask per retry interval, and none once a node follows the tip."""
    message = outgoing.message
    if isinstance(message, SyncRequestMsg) and message.want == HEAD_WANT:
        logs.info(log, "chain asked", to=_get_peer_names(outgoing))
    elif isinstance(message, SyncResponseMsg) and message.genesis is not None:
        logs.info(log, "chain sent", to=_get_peer_names(outgoing))
    elif isinstance(message, SyncRequestMsg):
        logs.info(log, "sync asked", to=_get_peer_names(outgoing), limit=message.limit)
    elif isinstance(message, SyncResponseMsg):
        logs.info(log, "sync sent", to=_get_peer_names(outgoing), blocks=len(message.blocks))
    elif isinstance(message, CandidateMsg):
        logs.info(log, "candidate sent", slot=message.block.slot, to=len(outgoing.to))
    elif isinstance(message, BlockMsg) and isinstance(message.block, Block):
        if message.block.producer == node_id and outgoing.route is Route.GOSSIP:
            logs.info(
                log,
                "block produced",
                slot=message.block.slot,
                signers=count_signers(message.block.signers),
            )
    elif isinstance(message, SkipVoteMsg):
        logs.info(log, "skip vote sent", slot=message.slot)
    elif isinstance(message, VoteMsg):
        logs.info(log, "vote sent", slot=message.slot)
