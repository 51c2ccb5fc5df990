"""Checkpoint sync: catch up from a proven finalized state, not by replaying history.

A node that sees blocks far ahead of its head (a new node, one back from a long
outage) follows the chain forward from the state it trusts, its finalized root
(genesis at first), with the light transition (``consensus/light_client.py``): blocks
are asked for in order from a peer (``ForwardSyncRequestMsg``), each checked against
the roles the light state elects, and stored as history (``BlocksFollowed``). When
the peer has no more, the light state's finalized checkpoint F is final by the votes
the node itself counted. The node then asks that peer for the state after the anchor
A, the parent of the latest full block C at or below F, checks it against
``C.state_root`` (``consensus/state_codec.py``), adopts it as its new root
(``EngineContext.install_anchor``) and validates fully only the blocks after A.

Sans-I/O like the rest of the engine. Peers that answer wrongly or not at all are
counted and another peer is tried; the backward sync (``consensus/sync.py``) pauses
while a follow is under way, so two catch-up paths do not race for the same CPU.
"""

from __future__ import annotations

from collections.abc import Callable

from edgechain.chain.model import AnyBlock, Block
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.context import EngineContext
from edgechain.consensus.light_client import LightState, get_light_state, process_light_block
from edgechain.consensus.messages import (
    ArchiveForwardWanted,
    BlocksFollowed,
    CheckpointInstalled,
    ForwardSyncRequestMsg,
    ForwardSyncResponseMsg,
    Outgoing,
    Output,
    Route,
    StateRequestMsg,
    StateResponseMsg,
)
from edgechain.consensus.state import get_current_slot
from edgechain.consensus.state_codec import compute_state_root, decode_state, encode_state
from edgechain.errors import DecodeError, PeerError, RejectReason, ValidationError
from edgechain.types import BlockHash, NodeId, Slot

CATCH_UP_SLOTS = 64
"""A node whose head is this many slots behind a block it was sent follows the chain
to a checkpoint instead of validating every block on the way."""

ANSWER_TIMEOUT_MS = 5_000
"""A peer that has not answered a forward or state request by then is passed over."""

RETRY_AFTER_MS = 30_000
"""After a follow that ended without a state, the backward sync has this long before
another follow starts (peers may not hold the chain far enough back, or be slow)."""

OnBlock = Callable[[AnyBlock, BlockHash, NodeId | None, int, Output], None]
Install = Callable[[AnyBlock, BlockHash, BlockState], None]


class CheckpointSync:
    """One follow at a time: the light state, the peer, the blocks kept above the
    anchor candidate, and the state request in flight."""

    def __init__(self, ctx: EngineContext, on_block: OnBlock, install: Install) -> None:
        self.ctx = ctx
        self.on_block = on_block
        self.install = install
        """``ConsensusEngine.install_anchor``: the chain continues from a checked state."""
        self.light: LightState | None = None
        self.peer: NodeId | None = None
        self.peers: list[NodeId] = []
        """Who else sent the blocks that showed we are behind: tried next."""
        self.tried: set[NodeId] = set()
        self.kept: list[tuple[BlockHash, AnyBlock]] = []
        """The followed chain from the anchor candidate on, oldest first."""
        self.followed = 0
        self.asked_ms = 0
        self.state_wanted: BlockHash | None = None
        self.installs = 0
        self.failures = 0
        self.blocks_followed = 0
        """Blocks checked with the light transition, over every follow."""
        self.anchor_slot: Slot | None = None
        """Slot of the last state installed."""
        self.retry_at_ms = 0

    def is_following(self) -> bool:
        return self.light is not None

    # --- starting ----------------------------------------------------------------------

    def maybe_start(self, ahead: list[tuple[Slot, NodeId]], now: int, out: Output) -> None:
        """Start following when a block ``CATCH_UP_SLOTS`` past our head has arrived
        (``ahead``: the slots and senders of blocks waiting for their ancestors)."""
        ctx = self.ctx
        head = ctx.get_head_state()
        fork = ctx.fork
        if head is None or fork is None or ctx.params is None or now < self.retry_at_ms:
            return
        far = sorted(
            {sender for slot, sender in ahead if slot >= head.slot + CATCH_UP_SLOTS}
            - self.tried
            - set(self.peers),
        )
        if self.light is not None:
            self.peers.extend(far)  # more peers to try if the current one fails
            return
        if not far:
            return
        root = ctx.states.get(fork.get_root())
        if root is None or root.finality is None:
            return
        self.light = get_light_state(root)
        self.kept = []
        self.followed = 0
        self.state_wanted = None
        self.peers = far
        self.tried = set()
        self.peer = None
        self._ask_next_peer(now, out)

    def _ask_next_peer(self, now: int, out: Output) -> None:
        if not self.peers:
            self._give_up(now)
            return
        self.peer = self.peers.pop(0)
        self.tried.add(self.peer)
        self._ask(now, out)

    def _ask(self, now: int, out: Output) -> None:
        assert self.light is not None and self.peer is not None
        self.asked_ms = now
        if self.state_wanted is not None:
            message: ForwardSyncRequestMsg | StateRequestMsg = StateRequestMsg(self.state_wanted)
        else:
            message = ForwardSyncRequestMsg(self.light.block_hash, self.ctx.config.sync_limit)
        out.messages.append(Outgoing(message, Route.DIRECT, (self.peer,)))

    def _give_up(self, now: int) -> None:
        """No peer brought us to a checkpoint: the backward sync takes over for a while."""
        self._stop()
        self.tried = set()
        self.retry_at_ms = now + RETRY_AFTER_MS

    def _stop(self) -> None:
        self.light = None
        self.peer = None
        self.kept = []
        self.state_wanted = None

    def on_tick(self, now: int, out: Output) -> None:
        """Pass over a peer that did not answer in time."""
        if self.light is not None and now - self.asked_ms >= ANSWER_TIMEOUT_MS:
            self.failures += 1
            self._ask_next_peer(now, out)

    def get_wakeups(self, now: int) -> list[int]:
        return [self.asked_ms + ANSWER_TIMEOUT_MS] if self.light is not None else []

    # --- following ---------------------------------------------------------------------

    def on_forward_response(
        self, msg: ForwardSyncResponseMsg, sender: NodeId | None, now: int, out: Output
    ) -> None:
        light, params = self.light, self.ctx.params
        if light is None or params is None or sender != self.peer:
            return
        if msg.after != light.block_hash or self.state_wanted is not None:
            return  # an answer to an earlier request
        limit = self.ctx.config.sync_limit
        if len(msg.blocks) > limit:
            self._give_up_on_peer(now, out)
            raise PeerError(RejectReason.TOO_MANY, f"{len(msg.blocks)} blocks > {limit}")
        followed: list[tuple[BlockHash, AnyBlock]] = []
        error: ValidationError | None = None
        for block in msg.blocks:
            block_hash = self.ctx.memo.get_block_hash(block)
            try:
                light = process_light_block(
                    light, block, block_hash, params, self.ctx.memo.signatures
                )
            except ValidationError as exc:
                error = exc
                break
            followed.append((block_hash, block))
        # What checked is kept (and stored), even if a later block of the answer did not.
        self.light = light
        if followed:
            self._keep(followed, out)
        if error is not None:
            self._give_up_on_peer(now, out)
            raise PeerError(error.reason, f"followed block: {error.detail}")
        # Near the tip (or nothing more): fetch the state. The answer may have been cut
        # short by the frame size (``wire/codec.fit_forward_response``), so its length
        # does not tell.
        if msg.blocks and msg.blocks[-1].slot + 2 < get_current_slot(params, now):
            self._ask(now, out)
            return
        self._request_state(now, out)

    def _keep(self, followed: list[tuple[BlockHash, AnyBlock]], out: Output) -> None:
        self.followed += len(followed)
        self.blocks_followed += len(followed)
        out.events.append(BlocksFollowed(tuple(followed)))
        self.kept.extend(followed)
        anchor = self._find_anchor()
        if anchor is not None and anchor > 0:
            del self.kept[:anchor]

    def _find_anchor(self) -> int | None:
        """The index in ``kept`` of the anchor: the parent of the latest full block at
        or below the light state's finalized checkpoint."""
        light = self.light
        if light is None:
            return None
        finalized = light.finality.finalized.block
        position = next((i for i, (h, _) in enumerate(self.kept) if h == finalized), None)
        if position is None:
            return None
        for index in range(position, 0, -1):
            if isinstance(self.kept[index][1], Block):
                return index - 1
        return None

    def _request_state(self, now: int, out: Output) -> None:
        anchor = self._find_anchor()
        fork = self.ctx.fork
        if anchor is None or fork is None:
            # Nothing final past what we hold: the ordinary sync will do.
            self._give_up(now)
            return
        del self.kept[:anchor]
        anchor_hash, anchor_block = self.kept[0]
        if anchor_block.slot <= fork.get_slot(fork.get_root()):
            self._give_up(now)
            return
        self.state_wanted = anchor_hash
        self._ask(now, out)

    def _give_up_on_peer(self, now: int, out: Output) -> None:
        self.failures += 1
        self._ask_next_peer(now, out)

    # --- the state -------------------------------------------------------------------

    def on_state_response(
        self, msg: StateResponseMsg, sender: NodeId | None, now: int, out: Output
    ) -> None:
        if self.state_wanted is None or sender != self.peer or msg.block != self.state_wanted:
            return
        if not msg.state:
            # The peer no longer holds that state: follow on and try a later anchor.
            self.state_wanted = None
            self._give_up_on_peer(now, out)
            return
        anchor_hash, anchor_block = self.kept[0]
        child = self.kept[1][1]
        assert isinstance(child, Block)
        try:
            state = decode_state(msg.state)
        except DecodeError as exc:
            self.state_wanted = None
            self._give_up_on_peer(now, out)
            raise PeerError(exc.reason, f"checkpoint state: {exc.detail}") from exc
        if (
            state.block_hash != anchor_hash
            or state.slot != anchor_block.slot
            # Not the memo: a forged state must not leave its root behind there.
            or compute_state_root(state) != child.state_root
        ):
            self.state_wanted = None
            self._give_up_on_peer(now, out)
            raise PeerError(RejectReason.BAD_STATE_ROOT, "state does not match its root")
        followed, rest = self.followed, self.kept[1:]
        self._stop()
        self.install(anchor_block, anchor_hash, state)
        self.installs += 1
        self.anchor_slot = anchor_block.slot
        out.events.append(CheckpointInstalled(anchor_hash, anchor_block.slot, followed))
        for block_hash, block in rest:
            self.on_block(block, block_hash, sender, now, out)


# --- answering -------------------------------------------------------------------------


def on_forward_request(
    ctx: EngineContext, msg: ForwardSyncRequestMsg, sender: NodeId | None, out: Output
) -> None:
    """Answer from memory when ``after`` is on our head chain there, else let the node
    answer from its store (``ArchiveForwardWanted``)."""
    if sender is None or ctx.params is None:
        return
    limit = max(1, min(msg.limit, ctx.config.sync_limit))
    blocks = get_forward_blocks(ctx, msg.after, limit)
    if blocks is None:
        out.events.append(ArchiveForwardWanted(msg.after, limit, sender))
        return
    out.messages.append(
        Outgoing(ForwardSyncResponseMsg(msg.after, tuple(blocks)), Route.DIRECT, (sender,))
    )


def get_forward_blocks(ctx: EngineContext, after: BlockHash, limit: int) -> list[AnyBlock] | None:
    """Up to ``limit`` blocks of the head chain in memory after ``after``; None when
    memory does not hold ``after`` on that chain (nor is it the genesis below it)."""
    chain = ctx.get_chain()
    if after in ctx.blocks:
        try:
            start = chain.index(after) + 1
        except ValueError:
            return None
    elif chain and ctx.blocks[chain[0]].parent == after:
        start = 0  # the genesis (or a root) just below the oldest block held
    elif not chain and after == ctx.head:
        start = 0
    else:
        return None
    return [ctx.blocks[h] for h in chain[start : start + limit]]


def complete_forward_chain(
    ctx: EngineContext, archived: list[tuple[BlockHash, AnyBlock]], after: BlockHash, limit: int
) -> tuple[AnyBlock, ...]:
    """The answer to a forward request that memory could not serve: ``archived`` (the
    finalized chain after ``after`` from a store, with hashes, at most ``limit``), then
    the unfinalized tip and the finalized blocks not archived yet, from memory."""
    blocks = [block for _, block in archived]
    if len(blocks) < limit:
        last = archived[-1][0] if archived else after
        blocks.extend(get_forward_blocks(ctx, last, limit - len(blocks)) or ())
    return tuple(blocks)


def on_state_request(
    ctx: EngineContext, msg: StateRequestMsg, sender: NodeId | None, out: Output
) -> None:
    """The state after a block we hold in memory (the retained window keeps those a
    little below finality), or an empty answer."""
    if sender is None:
        return
    state = ctx.states.get(msg.block)
    # Encoded per request: a follower asks once, at the end of its follow.
    encoded = b"" if state is None else encode_state(state)
    out.messages.append(Outgoing(StateResponseMsg(msg.block, encoded), Route.DIRECT, (sender,)))
