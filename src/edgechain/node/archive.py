"""What the node's store keeps for finality's sake: its last finality vote, and the
chain history memory no longer holds.

The engine prunes memory below the finalized checkpoint (``consensus/pruning.py``) but
the store keeps every block, so a peer that syncs from far behind (a new node, one
restarted after a long outage) is served from here (``ArchiveSyncWanted``). The last
vote is written before the report that carries it leaves (events are handled before
messages are sent, ``node.py``), so a restart cannot sign a second vote for an epoch.
"""

from __future__ import annotations

from edgechain.chain.encoding import (
    TAG_SKIP_BLOCK,
    decode_block,
    decode_finality_vote,
    encode_finality_vote,
)
from edgechain.chain.model import AnyBlock, FinalityVote
from edgechain.chain.store import BlockStore
from edgechain.consensus.sync import collect_ancestry
from edgechain.errors import DecodeError, LocalError
from edgechain.types import BlockHash

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
