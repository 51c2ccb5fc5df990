"""Where a signed command stands on one node: applied, pending, dropped or unknown.

A command's sender holds its hash (the API's receipt). Its signer's ``last_seq``
reaching the command's seq does not say it was applied: a producer passes over a
command that no longer applies and includes a later one of the same signer
(``CommandPool.select``). So the answer is read from what the node holds: the head
chain's blocks in memory (finality keeps a window of them, ``consensus/pruning.py``),
then its command pool (pending, with the reason the last head refused it) and the
commands the pool dropped and why (``CommandPool.prune``).

Pure reads of the engine's state, no I/O (``GET /commands/{hash}``, the CLI's wait).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from edgechain.chain.command_encoding import compute_command_hash
from edgechain.chain.model import Block, SignedCommand
from edgechain.consensus.engine import ConsensusEngine
from edgechain.types import BlockHash


class CommandState(enum.Enum):
    APPLIED = "applied"
    """A block of the node's head chain carries it."""
    PENDING = "pending"
    """The node keeps it for a block."""
    DROPPED = "dropped"
    """The node dropped it unapplied (``reason``)."""
    UNKNOWN = "unknown"
    """Not known here: never received, applied below the blocks memory holds, or
    removed from the pool as its signer's later command was applied (the sender, who
    knows its seq, compares it with the signer's ``last_seq``)."""


@dataclass(frozen=True)
class CommandStatus:
    state: CommandState
    command: SignedCommand | None = None
    slot: int | None = None
    """APPLIED: the carrying block's slot; PENDING: the slot it was received in;
    DROPPED: the head's slot when it was dropped."""
    block: BlockHash | None = None
    """APPLIED: the carrying block."""
    reason: str | None = None
    """PENDING: why the last head refused it (None while it applies); DROPPED: why."""
    refused_heads: int = 0
    """PENDING: heads in a row that refused it."""


def get_command_status(engine: ConsensusEngine, digest: bytes) -> CommandStatus:
    """``digest``'s status on ``engine`` (the head chain first: a command a block
    carries is applied whatever the pool says)."""
    applied = find_applied_command(engine, digest)
    if applied is not None:
        return applied
    pending = engine.commands.pending.get(digest)
    if pending is not None:
        return CommandStatus(
            CommandState.PENDING,
            pending.command,
            slot=pending.received_slot,
            reason=pending.refusal,
            refused_heads=pending.refused_heads,
        )
    dropped = engine.commands.dropped.get(digest)
    if dropped is not None:
        return CommandStatus(
            CommandState.DROPPED, dropped.command, slot=dropped.slot, reason=dropped.reason
        )
    return CommandStatus(CommandState.UNKNOWN)


def find_applied_command(engine: ConsensusEngine, digest: bytes) -> CommandStatus | None:
    """The block of the head chain, among those memory holds, that carries ``digest``
    (newest first: a sender asks soon after it sent)."""
    for block_hash in reversed(engine.get_chain()):
        block = engine.blocks[block_hash]
        if isinstance(block, Block):
            for cmd in block.commands:
                if compute_command_hash(cmd) == digest:
                    return CommandStatus(
                        CommandState.APPLIED, cmd, slot=block.slot, block=block_hash
                    )
    return None
