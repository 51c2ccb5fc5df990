"""This node's last finality vote, in a file of its own beside the block store.

Casper FFG is safe only while an honest node never signs two votes with the same target
epoch (``consensus/finality_votes.py``), so the node persists each new vote before the
report that carries it leaves (``LastVoteChanged``). The store (``chain.db``) kept it
alone until session 51. But what the node tells its operator to do with a damaged store
(``errors.make_corrupt_store_error``) is to move ``chain.db`` aside and start again, and
the restarted node, syncing from its peers with an empty store, had no last vote: it
could sign, for an epoch it had voted in, a vote for another branch's checkpoint.

The file survives that: it sits outside ``chain.db`` and is written whole or not at all
(``runtime/durable_files.write_durably``). It names the genesis the vote was cast on,
since a data directory may be reused for a new chain: a vote of another chain must not
hold this one's votes back (the engine drops it once it knows its genesis,
``EngineConfig.last_vote_genesis``). The store keeps its copy as
well (older data directories have only that one); at start the node takes the later of
the two (:func:`choose_later_vote`).
"""

from __future__ import annotations

import errno
import hashlib
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.model import FinalityVote
from edgechain.chain.report_encoding import decode_finality_vote, encode_finality_vote
from edgechain.errors import DecodeError, LocalError, StoreError, StoreFullError
from edgechain.runtime.durable_files import write_durably
from edgechain.types import BlockHash

VOTE_FILE_NAME = "finality-vote"
MAGIC = b"edgechain/finality-vote/1\n"
HASH_SIZE = 32


@dataclass(frozen=True)
class StoredVote:
    """A vote as the file holds it: the genesis of its chain and the vote."""

    genesis: BlockHash
    vote: FinalityVote


def read_vote_file(path: Path) -> StoredVote | None:
    """The vote in ``path``; None when there is no file. An unreadable file is a
    LocalError: a node that cannot tell its last vote does not start (it could vote
    twice), and its operator is told what the file is for."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _unreadable(path, str(exc)) from exc
    body, digest = data[:-HASH_SIZE], data[-HASH_SIZE:]
    if not body.startswith(MAGIC) or hashlib.sha256(body).digest() != digest:
        raise _unreadable(path, "not a finality vote file, or damaged")
    genesis = body[len(MAGIC) : len(MAGIC) + HASH_SIZE]
    if len(genesis) != HASH_SIZE:
        raise _unreadable(path, "too short")
    try:
        vote = decode_finality_vote(body[len(MAGIC) + HASH_SIZE :])
    except DecodeError as exc:
        raise _unreadable(path, str(exc)) from exc
    return StoredVote(BlockHash(genesis), vote)


def write_vote_file(path: Path, stored: StoredVote) -> None:
    """Replace ``path`` with ``stored``, durably, before the vote is sent. A full disk
    raises StoreFullError and any other failure StoreError: the node stops as for a
    failed block write (``node_daemon``), since sending a vote it could forget is what
    the file is there to prevent."""
    body = MAGIC + bytes(stored.genesis) + encode_finality_vote(stored.vote)
    try:
        write_durably(path, body + hashlib.sha256(body).digest())
    except OSError as exc:
        error = StoreFullError if exc.errno == errno.ENOSPC else StoreError
        raise error(f"finality vote file {path}: {exc}") from exc


def choose_later_vote(a: FinalityVote | None, b: FinalityVote | None) -> FinalityVote | None:
    """The later of two votes of one node on one chain: an honest node moves only to a
    later target epoch with a source no earlier (``finality_votes.is_vote_allowed``),
    so the later vote is the one with the greater (target epoch, source epoch)."""
    if a is None or b is None:
        return a if b is None else b
    return max(a, b, key=lambda v: (v.target.epoch, v.source.epoch))


def get_start_vote(
    store_vote: FinalityVote | None, store_genesis: BlockHash | None, path: Path
) -> tuple[FinalityVote | None, BlockHash | None]:
    """The last vote a starting node goes on from, and the genesis the engine must
    check it against (None: the store's own chain, nothing to check). ``store_vote`` and
    ``store_genesis``: what the block store holds (``chain.db``)."""
    held = read_vote_file(path)
    if held is None:
        return store_vote, None
    if store_genesis is None:  # a fresh store (one moved aside): the file alone knows
        return held.vote, held.genesis
    if held.genesis != store_genesis:  # written on another chain in this directory
        return store_vote, None
    return choose_later_vote(store_vote, held.vote), None


def _unreadable(path: Path, why: str) -> LocalError:
    return LocalError(
        f"the finality vote file {path} is unreadable ({why}): it holds this node's last"
        " finality vote, without which the node could sign a second vote for an epoch;"
        " remove it only if the node's chain is to be abandoned"
    )
