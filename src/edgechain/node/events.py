"""What a node keeps of what its engine did: the store, the accepted-blocks log, log lines.

:class:`EventRecorder` writes accepted blocks and the head to the SQLite store (not
while the node replays that store), keeps the recent accepted blocks the API serves
(``GET /blocks``) and logs each event as a JSON line. :func:`log_duty` logs the
producer's and committee's outgoing actions. Together they let every skip block be
explained from the logs (ARCHITECTURE.md, "Real node"). Acting on an event (starting
or migrating apps) is the node's, not this module's.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from edgechain.chain.attestation import count_signers
from edgechain.chain.encoding import encode_block, encode_genesis
from edgechain.chain.model import Block, SkipBlock
from edgechain.chain.store import BlockStore
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import (
    BlockAccepted,
    BlockMsg,
    CandidateMsg,
    GenesisCreated,
    HeadChanged,
    MigrationOrder,
    Outgoing,
    PeerRejected,
    Route,
    SkipVoteMsg,
    VoteMsg,
)
from edgechain.node.clock import NodeClock
from edgechain.telemetry import logs
from edgechain.types import NodeId

log = logging.getLogger("edgechain.node")

MAX_ACCEPTED_LOG = 20_000


@dataclass
class AcceptedBlock:
    hash: str
    slot: int
    skip: bool
    signers: int
    producer: str | None
    excluded: str | None
    accepted_ms: int


class EventRecorder:
    """Records the engine's events in ``store``, in :attr:`accepted` and in the log;
    ``accepted_ms`` is read from ``clock``, the node's."""

    def __init__(self, store: BlockStore, clock: NodeClock) -> None:
        self.store = store
        self.clock = clock
        self.accepted: deque[AcceptedBlock] = deque(maxlen=MAX_ACCEPTED_LOG)
        """Blocks accepted (any branch), oldest first; replayed ones too."""

    def record(self, engine: ConsensusEngine, event: object, *, replaying: bool) -> None:
        """Record ``event``; ``replaying``: it comes from the store, not written again."""
        if isinstance(event, BlockAccepted):
            block = engine.blocks[event.block_hash]
            weight = event.signers
            if not replaying:
                self.store.put_block(
                    event.block_hash, block.parent, block.slot, weight, encode_block(block)
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
        elif isinstance(event, PeerRejected):
            logs.debug(log, "peer input rejected", reason=event.reason)


def log_duty(outgoing: Outgoing, node_id: NodeId) -> None:
    """Producer and committee actions, so a skip block can be explained from logs."""
    message = outgoing.message
    if isinstance(message, CandidateMsg):
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
