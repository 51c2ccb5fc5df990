"""Validators' address records: a node that moved tells the chain (issue 16, item 2).

A validator's address is the one its inclusion request named, and every node sends it
its direct messages there (``node/routing.py``). A node restarted on another port, or
given a new IP, would stay unreachable at the old one. So a validator whose configured
address (``EngineConfig.address``) differs from the one on its head chain signs an
:class:`~edgechain.chain.model.AddressRecord` for the current slot and gossips it; every
node checks it (``validate_address_record``) and pools it; a producer carries the pooled
ones (block format 9); the block's transition moves the address for every node at once.
A record must be newer than the address it replaces (``ValidatorInfo.address_slot``),
so an old one cannot be replayed to move a node back. Until a block carries it, the DHT
already knows the new address from the node's own lookups (``PeerRouting.resolve``).
"""

from __future__ import annotations

from collections.abc import Mapping

from edgechain.chain.assembly import make_address_record
from edgechain.chain.model import AddressRecord
from edgechain.chain.validation import validate_address_record
from edgechain.consensus.context import EngineContext
from edgechain.consensus.messages import AddressMsg, Outgoing, Output, Route
from edgechain.consensus.state import BlockState
from edgechain.types import NodeId, Slot

RESEND_MS = 10_000
"""Our record is gossiped again this often until a block carries it."""
MAX_PENDING = 4096
"""Records pooled at most (one per validator: a bound for a hostile flood of nodes)."""


class AddressRecords:
    """Pooled address records, and our own when we moved."""

    def __init__(self, ctx: EngineContext) -> None:
        self.ctx = ctx
        self.pending: dict[NodeId, AddressRecord] = {}
        self.last_sent_ms: int | None = None

    def on_record(self, record: AddressRecord, head: BlockState) -> None:
        """Check a gossiped record against ``head`` and pool it (the newest per node)."""
        known = self.pending.get(record.node)
        if known is not None and known.slot >= record.slot:
            return
        params = self.ctx.params
        assert params is not None
        validate_address_record(
            record, params.chain_id, head.validators, Slot(2**62), self.ctx.memo.signatures
        )
        if len(self.pending) >= MAX_PENDING and record.node not in self.pending:
            return
        self.pending[record.node] = record

    def maybe_announce(self, head: BlockState, slot: Slot, now: int, out: Output) -> None:
        """If our address on chain is not the one we run at, sign and gossip a record
        (again every ``RESEND_MS`` until a block carries it)."""
        ctx = self.ctx
        info = head.validators.get(ctx.node_id)
        address = ctx.config.address
        if info is None or info.address == address or ctx.params is None:
            return
        if self.last_sent_ms is not None and now - self.last_sent_ms < RESEND_MS:
            return
        own = self.pending.get(ctx.node_id)
        if own is None or own.address != address or own.slot <= info.address_slot:
            # A record must be newer than the address it replaces: wait for a later
            # slot if ours was set in this one.
            if slot <= info.address_slot:
                return
            own = make_address_record(ctx.sk, ctx.params.chain_id, address, slot)
            self.pending[ctx.node_id] = own
        self.last_sent_ms = now
        out.messages.append(Outgoing(AddressMsg(own), Route.GOSSIP))

    def prune(self, head: BlockState) -> None:
        """Drop records the head chain applied, or can no longer apply."""
        for node in [n for n, rec in self.pending.items() if not _is_pending(rec, head)]:
            del self.pending[node]


def choose_records(
    pending: Mapping[NodeId, AddressRecord],
    parent: BlockState,
    slot: Slot,
    exiting: frozenset[NodeId],
    limit: int,
) -> tuple[AddressRecord, ...]:
    """The records a block on ``parent`` at ``slot`` carries: of validators that do not
    exit in it, newer than their address, not from a future slot; in node order."""
    return tuple(
        rec
        for node, rec in sorted(pending.items())
        if node not in exiting and rec.slot <= slot and _is_pending(rec, parent)
    )[:limit]


def _is_pending(record: AddressRecord, state: BlockState) -> bool:
    info = state.validators.get(record.node)
    return info is not None and record.slot > info.address_slot
