"""node/vote_file.py: the last finality vote outlives a store moved aside, binds to its
chain, and a damaged file stops the node rather than let it vote twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgechain.chain.model import Checkpoint, FinalityVote
from edgechain.errors import LocalError
from edgechain.node.vote_file import (
    StoredVote,
    choose_later_vote,
    get_start_vote,
    read_vote_file,
    write_vote_file,
)
from edgechain.types import BlockHash

GENESIS = BlockHash(b"g" * 32)
OTHER_GENESIS = BlockHash(b"o" * 32)


def vote(source: int, target: int) -> FinalityVote:
    return FinalityVote(
        Checkpoint(source, BlockHash(bytes([source % 256]) * 32)),
        Checkpoint(target, BlockHash(bytes([target % 256]) * 32)),
    )


def test_a_written_vote_reads_back_and_replaces_the_last(tmp_path: Path) -> None:
    path = tmp_path / "finality-vote"
    assert read_vote_file(path) is None
    write_vote_file(path, StoredVote(GENESIS, vote(1, 2)))
    write_vote_file(path, StoredVote(GENESIS, vote(2, 3)))
    assert read_vote_file(path) == StoredVote(GENESIS, vote(2, 3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finality-vote"]  # no .tmp left


@pytest.mark.parametrize("damage", ["flip", "truncate", "foreign"])
def test_a_damaged_file_stops_the_node_with_what_it_is_for(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "finality-vote"
    write_vote_file(path, StoredVote(GENESIS, vote(1, 2)))
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        del data[-5:]
    else:
        data = bytearray(b"not a vote at all")
    path.write_bytes(bytes(data))
    with pytest.raises(LocalError, match="could sign a second vote"):
        read_vote_file(path)


def test_the_later_vote_is_the_one_with_the_later_target() -> None:
    assert choose_later_vote(None, None) is None
    assert choose_later_vote(vote(1, 2), None) == vote(1, 2)
    assert choose_later_vote(None, vote(1, 2)) == vote(1, 2)
    assert choose_later_vote(vote(1, 2), vote(2, 4)) == vote(2, 4)
    assert choose_later_vote(vote(3, 5), vote(2, 4)) == vote(3, 5)


def test_the_start_vote_of_a_store_moved_aside_is_the_files(tmp_path: Path) -> None:
    """A fresh store (no genesis yet) starts from the file's vote, to be checked
    against the genesis; a store of the file's chain from the later of the two; one of
    another chain ignores the file (a data directory reused for a new chain)."""
    path = tmp_path / "finality-vote"
    assert get_start_vote(vote(1, 2), GENESIS, path) == (vote(1, 2), None)
    write_vote_file(path, StoredVote(GENESIS, vote(4, 6)))
    assert get_start_vote(None, None, path) == (vote(4, 6), GENESIS)
    assert get_start_vote(vote(1, 2), GENESIS, path) == (vote(4, 6), None)
    assert get_start_vote(vote(6, 7), GENESIS, path) == (vote(6, 7), None)
    assert get_start_vote(vote(1, 2), OTHER_GENESIS, path) == (vote(1, 2), None)
    assert get_start_vote(None, OTHER_GENESIS, path) == (None, None)
