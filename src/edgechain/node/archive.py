"""What the node's store keeps for finality's sake: its last finality vote, and the
chain history memory no longer holds.

The engine prunes memory below the finalized checkpoint (``consensus/pruning.py``) but
the store keeps every block, so a peer that syncs from far behind (a new node, one
restarted after a long outage) is served from here (``ArchiveSyncWanted``). The last
vote is written before the report that carries it leaves (events are handled before
messages are sent, ``node.py``), so a restart cannot sign a second vote for an epoch.

For checkpoint sync (``consensus/checkpoint_sync.py``) the store also indexes the
finalized chain by slot, which a follower reads forward, keeps the blocks this node
itself followed, and holds the state of the newest finalized block: a restart starts
there and re-applies only the blocks after it, not the whole history.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from edgechain.chain.attestation import count_signers
from edgechain.chain.encoding import (
    FORMAT_VERSION,
    TAG_SKIP_BLOCK,
    decode_block,
    decode_block_with_hash,
    encode_block,
)
from edgechain.chain.model import AnyBlock, Block, FinalityVote
from edgechain.chain.report_encoding import decode_finality_vote, encode_finality_vote
from edgechain.chain.store.block_store import BlockStore
from edgechain.consensus.block_state import BlockState
from edgechain.consensus.checkpoint_sync import complete_forward_chain
from edgechain.consensus.context import EngineContext
from edgechain.consensus.engine import ConsensusEngine
from edgechain.consensus.messages import (
    ArchiveForwardWanted,
    ArchiveSyncWanted,
    BlocksFollowed,
    FinalityAdvanced,
    ForwardSyncResponseMsg,
    Outgoing,
    Output,
    Route,
    SyncResponseMsg,
)
from edgechain.consensus.state_codec import (
    STATE_FORMAT_VERSION,
    compute_state_root,
    decode_state,
    encode_state,
)
from edgechain.consensus.sync import collect_ancestry
from edgechain.errors import (
    DecodeError,
    LocalError,
    RejectReason,
    StoreError,
    make_corrupt_store_error,
)
from edgechain.types import BlockHash, Slot

LAST_VOTE_KEY = "last_finality_vote"


def get_last_vote(store: BlockStore) -> FinalityVote | None:
    data = store.get_meta(LAST_VOTE_KEY)
    if data is None:
        return None
    try:
        return decode_finality_vote(data)
    except DecodeError as exc:
        # Our own file, not a peer's input: refuse to start rather than risk a
        # second vote for an epoch.
        raise LocalError(f"the stored finality vote is unreadable: {exc}") from exc


def put_last_vote(store: BlockStore, vote: FinalityVote) -> None:
    store.put_meta(LAST_VOTE_KEY, encode_finality_vote(vote))


def get_stored_chain_below(
    store: BlockStore, block: BlockHash
) -> list[tuple[BlockHash, int, bool]]:
    """``(hash, slot, is_skip)`` of the stored ancestors of ``block`` (itself
    excluded), oldest first, down to the genesis: the part of the head chain that
    memory no longer holds."""
    out: list[tuple[BlockHash, int, bool]] = []
    record = store.get_record(block)
    while record is not None:
        parent = store.get_record(record.parent)
        if parent is None:
            break
        data = store.get_block(parent.hash)
        out.append((parent.hash, parent.slot, data is not None and data[0] == TAG_SKIP_BLOCK))
        record = parent
    out.reverse()
    return out


def get_archived_chain(
    store: BlockStore, want: BlockHash, limit: int
) -> tuple[tuple[AnyBlock, ...], BlockHash | None]:
    """Up to ``limit`` stored blocks ending at ``want``, oldest first, and the parent of
    the oldest (the genesis hash when the answer reaches it; None when ``want`` is not
    stored)."""

    def get_stored(block: BlockHash) -> AnyBlock | None:
        data = store.get_block(block)
        return None if data is None else decode_block(data)

    blocks, below = collect_ancestry(get_stored, want, limit)
    return (tuple(blocks), below) if blocks else ((), None)


@contextlib.contextmanager
def reporting_store_failure(on_failure: Callable[[StoreError], None]) -> Iterator[None]:
    """A StoreError raised inside goes to ``on_failure`` (the node stops on it,
    ``Node._stop_on_store_failure``) and on to the caller."""
    try:
        yield
    except StoreError as exc:
        on_failure(exc)
        raise


class StoreArchive:
    """The finalized chain in the store's canonical index, for the app manager's checks
    of moves memory no longer holds (``lifecycle.ChainArchive``).

    Our own store gone bad is our error, not a missing block: a read SQLite refuses, or
    a stored block that does not decode to its hash (StoreCorruptError), goes to
    ``on_failure`` (the node stops, as on any store failure, ``Node._stop_on_store_failure``)
    and is raised to the caller. Before, the app manager's pass raised it, logged it and
    tried again at its next pass, every pass, while the node went on reporting: its
    apps were neither run nor moved (session 46, a page of ``chain.db`` garbled)."""

    def __init__(self, store: BlockStore, on_failure: Callable[[StoreError], None]) -> None:
        self.store = store
        self.on_failure = on_failure

    def get_block_at(self, slot: Slot) -> tuple[BlockHash, AnyBlock] | None:
        with reporting_store_failure(self.on_failure):
            block_hash = self.store.get_canonical_hash(slot)
            if block_hash is None:
                return None
            block = self._read(block_hash, f"slot {slot}")
        return (block_hash, block) if block is not None else None

    def get_finalized_block(self, block_hash: BlockHash) -> AnyBlock | None:
        with reporting_store_failure(self.on_failure):
            record = self.store.get_record(block_hash)
            if record is None or self.store.get_canonical_hash(record.slot) != block_hash:
                return None
            return self._read(block_hash, f"slot {record.slot}")

    def _read(self, block_hash: BlockHash, where: str) -> AnyBlock | None:
        data = self.store.get_block(block_hash)
        if data is None:
            return None
        path = self.store.path
        try:
            block, stored_hash = decode_block_with_hash(data)
        except DecodeError as exc:
            what = f"is damaged: the stored block at {where} is unreadable: {exc}"
            raise make_corrupt_store_error(path, what) from exc
        if stored_hash != block_hash:
            what = f"is damaged: the stored block at {where} does not hash to its index entry"
            raise make_corrupt_store_error(path, what)
        return block


def get_archive_response(
    store: BlockStore, engine: ConsensusEngine, event: ArchiveSyncWanted | ArchiveForwardWanted
) -> Outgoing | None:
    """The answer from the store to a peer syncing history that memory no longer holds:
    backward from a block (``ArchiveSyncWanted``), or forward along the finalized chain
    for checkpoint sync (``ArchiveForwardWanted``). None: nothing stored to send."""
    if isinstance(event, ArchiveForwardWanted):
        blocks = get_forward_chain(store, engine.ctx, event.after, event.limit)
        response = ForwardSyncResponseMsg(event.after, blocks)
        return Outgoing(response, Route.DIRECT, (event.sender,))
    archived, below = get_archived_chain(store, event.want, event.limit)
    if not archived:
        return None
    genesis = engine.genesis_msg if below == engine.ctx.get_genesis_hash() else None
    return Outgoing(SyncResponseMsg(archived, genesis), Route.DIRECT, (event.sender,))


# --- checkpoint sync (consensus/checkpoint_sync.py) --------------------------------------


def get_forward_chain(
    store: BlockStore, ctx: EngineContext, after: BlockHash, limit: int
) -> tuple[AnyBlock, ...]:
    """Up to ``limit`` blocks of the finalized chain after ``after`` (from the store's
    canonical index), continued from memory's head chain; empty when ``after`` is not
    on the finalized chain this node stored."""
    if after == ctx.get_genesis_hash():
        slot = 0
    else:
        record = store.get_record(after)
        if record is None or store.get_canonical_hash(record.slot) != after:
            return ()
        slot = record.slot
    archived = [(h, decode_block(data)) for h, data in store.get_canonical_after(slot, limit)]
    return complete_forward_chain(ctx, archived, after, limit)


def put_followed_blocks(store: BlockStore, event: BlocksFollowed) -> None:
    """Blocks checkpoint sync followed are history this node can serve: stored as
    accepted blocks are (each block's weight is its signer count)."""
    store.put_blocks(
        (block_hash, block.parent, block.slot, count_signers(block.signers), encode_block(block))
        for block_hash, block in event.blocks
    )


def put_finalized_chain(store: BlockStore, ctx: EngineContext, event: FinalityAdvanced) -> None:
    """The finalized blocks in the canonical index (what forward sync serves), and the
    state of the newest as the snapshot a restart starts from."""
    store.put_canonical((block.slot, block_hash) for block_hash, block, _ in event.finalized_blocks)
    state = ctx.states.get(event.finalized.block)
    if state is not None and state.slot > 0:  # the genesis needs no snapshot
        store.put_state_snapshot(event.finalized.block, state.slot, encode_state(state))


def get_other_version_error(what: str) -> LocalError:
    """A data directory written by another edgechain version: block and state formats
    are not compatible across versions (each bump names the hash domains), so the node
    cannot go on with that chain. Said plainly, with what to do: before, a stored
    snapshot of another format said only ``bad_version: state format 6``, and a young
    chain's blocks were replayed under the new format's rules without a word."""
    return LocalError(
        f"this data directory holds a chain written by another edgechain version ({what};"
        f" this build writes block format {FORMAT_VERSION}, state format"
        f" {STATE_FORMAT_VERSION}): run the version that wrote it, or start this node on a"
        " new data directory (and a new chain)"
    )


def load_snapshot(store: BlockStore) -> tuple[AnyBlock, BlockHash, BlockState] | None:
    """The stored snapshot (a finalized block and the state after it), checked: the
    state names that block, and hashes to the root the next canonical block carries
    when that one is a full block built on it."""
    snapshot = store.get_state_snapshot()
    if snapshot is None or snapshot.slot == 0:
        return None
    data = store.get_block(snapshot.hash)
    if data is None:
        raise LocalError("the state snapshot's block is not in the store")
    try:
        block, block_hash = decode_block_with_hash(data)
        state = decode_state(snapshot.encoded)
    except DecodeError as exc:
        if exc.reason is RejectReason.BAD_VERSION:
            raise get_other_version_error(f"its state snapshot: {exc.detail}") from exc
        raise LocalError(f"the stored state snapshot is unreadable: {exc}") from exc
    if block_hash != snapshot.hash or state.block_hash != snapshot.hash:
        raise LocalError("the stored state snapshot does not match its block")
    for _, child_data in store.get_canonical_after(snapshot.slot, 1):
        child = decode_block(child_data)
        if (
            isinstance(child, Block)
            and child.parent == block_hash
            and child.state_root != compute_state_root(state)
        ):
            raise LocalError("the stored state snapshot does not match its root")
    return block, block_hash, state


def replay_store(
    store: BlockStore,
    engine: ConsensusEngine,
    now_ms: Callable[[], int],
    apply: Callable[[Output], None],
) -> tuple[int, Slot | None]:
    """A restart: install the stored snapshot of the newest finalized state when there
    is one (:func:`load_snapshot`), then re-apply the stored blocks after it, parents
    first, without validating them again (``on_stored_block``); without a snapshot,
    every stored block from the genesis. Returns the blocks re-applied and the slot
    the replay started from."""
    after = -1
    snapshot = load_snapshot(store)
    if snapshot is not None:
        block, block_hash, state = snapshot
        engine.install_anchor(block, block_hash, state)
        after = state.slot
    count = 0
    for record in store.iter_blocks(after_slot=after):
        data = store.get_block(record.hash)
        if data is None:
            continue
        apply(engine.on_stored_block(decode_block(data), record.hash, now_ms()))
        count += 1
    return count, Slot(after + 1)
