"""Casper FFG finality over report votes (``chain/finality.py``) and the honest voting
rules (``consensus/finality_votes.py``), as pure functions on hand-built chains."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from edgechain.chain.finality import (
    MAX_PENDING_EPOCHS,
    FinalityState,
    compute_genesis_finality,
    process_finality,
)
from edgechain.chain.model import Checkpoint, FinalityVote
from edgechain.chain.validator_set import ValidatorInfo, ValidatorSet
from edgechain.consensus.finality_votes import choose_vote, is_vote_allowed
from edgechain.types import BlockHash, NodeId, PublicKey

EPOCH = 8


def _node(i: int) -> NodeId:
    return NodeId(bytes([i]) * 32)


def _validators(ids: range | list[int]) -> ValidatorSet:
    return ValidatorSet.from_members(
        ValidatorInfo(_node(i), PublicKey(bytes([i]) * 48), f"n{i}", ()) for i in ids
    )


def _hash(label: str) -> BlockHash:
    return BlockHash(label.encode().ljust(32, b"."))


@dataclass
class Chain:
    """A chain built block by block, each block's finality state kept."""

    validators: ValidatorSet
    tip: BlockHash
    slot: int
    state: FinalityState

    @staticmethod
    def start(validators: ValidatorSet) -> Chain:
        genesis = _hash("genesis")
        return Chain(validators, genesis, 0, compute_genesis_finality(genesis, validators))

    def add(
        self,
        slot: int,
        label: str,
        votes: list[tuple[int, FinalityVote]] = [],  # noqa: B006 - never mutated
        validators: ValidatorSet | None = None,
        excluded: tuple[int, ...] = (),
    ) -> BlockHash:
        block = _hash(label)
        new_validators = validators or self.validators
        self.state = process_finality(
            self.state,
            self.slot,
            self.tip,
            self.validators,
            slot,
            block,
            new_validators,
            [(_node(i), v) for i, v in votes],
            EPOCH,
            [_node(i) for i in excluded],
        )
        self.tip, self.slot, self.validators = block, slot, new_validators
        return block

    def fork(self) -> Chain:
        return Chain(self.validators, self.tip, self.slot, self.state)


def _vote(source: Checkpoint, target: Checkpoint, voters: range) -> list[tuple[int, FinalityVote]]:
    return [(i, FinalityVote(source, target)) for i in voters]


def test_genesis_is_justified_and_finalized() -> None:
    chain = Chain.start(_validators(range(9)))
    genesis = Checkpoint(0, _hash("genesis"))
    assert chain.state.justified == genesis and chain.state.finalized == genesis
    assert chain.state.get_latest_checkpoint() == genesis


def test_checkpoints_are_the_latest_block_at_or_before_each_boundary() -> None:
    chain = Chain.start(_validators(range(4)))
    chain.add(7, "b7")
    b8 = chain.add(8, "b8")  # exactly on epoch 1's boundary: its own checkpoint
    assert chain.state.get_latest_checkpoint() == Checkpoint(1, b8)
    b13 = chain.add(13, "b13")
    chain.add(30, "b30")  # epochs 2 and 3 are crossed: both fall back to b13
    assert chain.state.get_record(2) is not None
    assert chain.state.get_record(2).checkpoint == Checkpoint(2, b13)  # type: ignore[union-attr]
    assert chain.state.get_record(3).checkpoint == Checkpoint(3, b13)  # type: ignore[union-attr]
    assert chain.state.get_latest_checkpoint() == Checkpoint(3, b13)


def test_two_consecutive_supermajority_links_finalize() -> None:
    chain = Chain.start(_validators(range(9)))
    genesis = chain.state.justified
    b8 = chain.add(8, "b8")
    epoch1 = Checkpoint(1, b8)
    # 6 of 9 is exactly 2/3: not more than two thirds.
    chain.add(9, "b9", _vote(genesis, epoch1, range(6)))
    assert chain.state.justified == genesis
    chain.add(10, "b10", _vote(genesis, epoch1, range(6, 7)))
    assert chain.state.justified == epoch1
    b16 = chain.add(16, "b16")
    epoch2 = Checkpoint(2, b16)
    chain.add(17, "b17", _vote(epoch1, epoch2, range(7)))
    assert chain.state.justified == epoch2
    assert chain.state.finalized == epoch1


def test_a_justified_link_that_skips_an_epoch_does_not_finalize() -> None:
    chain = Chain.start(_validators(range(3)))
    genesis = chain.state.justified
    chain.add(8, "b8")
    b16 = chain.add(16, "b16")
    chain.add(17, "b17", _vote(genesis, Checkpoint(2, b16), range(3)))
    assert chain.state.justified == Checkpoint(2, b16)
    assert chain.state.finalized == genesis


def test_votes_that_do_not_count() -> None:
    chain = Chain.start(_validators(range(3)))
    genesis = chain.state.justified
    b8 = chain.add(8, "b8")
    epoch1 = Checkpoint(1, b8)
    wrong_source = Checkpoint(1, b8)
    chain.add(
        9,
        "b9",
        [
            (0, FinalityVote(genesis, Checkpoint(1, _hash("elsewhere")))),  # not our chain
            (1, FinalityVote(wrong_source, Checkpoint(2, b8))),  # source not justified
            (7, FinalityVote(genesis, epoch1)),  # not a voter
            (2, FinalityVote(genesis, Checkpoint(5, b8))),  # epoch not reached
            (2, FinalityVote(genesis, epoch1)),
            (2, FinalityVote(genesis, epoch1)),  # counted once
        ],
    )
    assert chain.state.justified == genesis
    assert chain.state.tallies == {epoch1: frozenset({_node(2)})}


def test_the_voter_set_stays_until_finality_so_a_shrunk_minority_cannot_finalize() -> None:
    """A partition's minority excludes the other side's producers (skip blocks), so its
    validator set shrinks to itself; its votes still count against the old voter set."""
    everyone = _validators(range(9))
    chain = Chain.start(everyone)
    genesis = chain.state.justified
    minority = range(4)
    chain.add(3, "m3", validators=_validators(minority))
    b8 = chain.add(8, "m8")
    chain.add(9, "m9", _vote(genesis, Checkpoint(1, b8), minority))
    b16 = chain.add(16, "m16")
    chain.add(17, "m17", _vote(genesis, Checkpoint(2, b16), minority))
    assert chain.state.justified == genesis and chain.state.finalized == genesis
    assert len(chain.state.voters) == 9


def test_the_admin_excluding_dead_voters_lets_finality_resume() -> None:
    """4 of 9 voters are gone for good: 5 votes are not more than 2/3 of 9, and the chain
    stalls. The admin's exclusions shrink the set to 8 (5 of 8 is not enough either),
    then 7, and the votes already counted justify in that exclusion's own block."""
    chain = Chain.start(_validators(range(9)))
    genesis = chain.state.justified
    live = range(4, 9)
    b8 = chain.add(8, "b8")
    chain.add(9, "b9", _vote(genesis, Checkpoint(1, b8), live))
    assert chain.state.justified == genesis
    chain.add(10, "b10", _vote(genesis, Checkpoint(1, b8), range(0, 1)), excluded=(0,))
    assert chain.state.justified == genesis  # the excluded voter's vote does not count
    assert chain.state.tallies[Checkpoint(1, b8)] == frozenset(_node(i) for i in live)
    chain.add(11, "b11", excluded=(1,))
    assert chain.state.justified == Checkpoint(1, b8)
    assert _node(0) not in chain.state.voters and len(chain.state.voters) == 7
    b16 = chain.add(16, "b16")
    chain.add(17, "b17", _vote(Checkpoint(1, b8), Checkpoint(2, b16), live))
    assert chain.state.finalized == Checkpoint(1, b8)
    # b8's block had all nine validators; the set it hands on leaves out the excluded.
    # (Two of the dead remain voters: 5 of 7 is still more than two thirds.)
    assert sorted(chain.state.voters.get_node_ids()) == [_node(i) for i in range(2, 9)]


def test_finalization_hands_on_the_finalized_blocks_validator_set() -> None:
    chain = Chain.start(_validators(range(3)))
    genesis = chain.state.justified
    b8 = chain.add(8, "b8", validators=_validators(range(5)))
    epoch1 = Checkpoint(1, b8)
    chain.add(9, "b9", _vote(genesis, epoch1, range(3)))
    b16 = chain.add(16, "b16", validators=_validators(range(6)))
    chain.add(17, "b17", _vote(epoch1, Checkpoint(2, b16), range(3)))
    assert chain.state.finalized == epoch1
    assert len(chain.state.voters) == 5  # b8's set, not the genesis set nor b16's


def test_a_stalled_chain_keeps_a_bounded_number_of_checkpoints() -> None:
    chain = Chain.start(_validators(range(3)))
    for i in range(1, 400):
        chain.add(i * 3, f"b{i}")
    assert len(chain.state.checkpoints) <= MAX_PENDING_EPOCHS + 1
    assert chain.state.checkpoints[0].checkpoint == chain.state.justified


def test_conflicting_finality_needs_a_third_of_the_voters_to_break_a_rule() -> None:
    """Two branches from genesis; the honest two thirds vote on one only. The other
    branch, with the remaining third plus the same honest votes it cannot reuse (their
    targets are the first branch's blocks), finalizes nothing."""
    a = Chain.start(_validators(range(9)))
    b = a.fork()
    genesis = a.state.justified
    a8, b8 = a.add(8, "a8"), b.add(8, "b8")
    a.add(9, "a9", _vote(genesis, Checkpoint(1, a8), range(7)))
    b.add(9, "b9", _vote(genesis, Checkpoint(1, b8), range(7, 9)))
    # Votes signed for branch a, carried into branch b: their targets are not b's.
    b.add(10, "b10", _vote(genesis, Checkpoint(1, a8), range(7)))
    assert a.state.justified == Checkpoint(1, a8)
    assert b.state.justified == genesis


def test_honest_vote_rules() -> None:
    g = Checkpoint(0, _hash("g"))
    c1, c2, c3 = Checkpoint(1, _hash("1")), Checkpoint(2, _hash("2")), Checkpoint(3, _hash("3"))
    other2 = Checkpoint(2, _hash("other"))
    assert is_vote_allowed(None, FinalityVote(g, c1))
    assert not is_vote_allowed(None, FinalityVote(c1, c1))  # no forward span
    last = FinalityVote(g, c2)
    assert is_vote_allowed(last, last)  # repeating says nothing new
    assert not is_vote_allowed(last, FinalityVote(g, other2))  # double vote
    assert not is_vote_allowed(last, FinalityVote(c1, c2))  # same target epoch
    assert not is_vote_allowed(FinalityVote(c1, c2), FinalityVote(g, c3))  # surrounds
    assert not is_vote_allowed(FinalityVote(g, c3), FinalityVote(c1, c2))  # surrounded
    assert is_vote_allowed(FinalityVote(g, c2), FinalityVote(c1, c3))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 8)), min_size=1, max_size=30))
def test_chosen_votes_never_double_vote_nor_surround(heads: list[tuple[int, int]]) -> None:
    """Whatever sequence of heads a node sees (reorgs included), the votes it signs
    pairwise obey both FFG rules."""
    signed: list[FinalityVote] = []
    last = None
    for justified_epoch, gap in heads:
        target_epoch = justified_epoch + gap
        state = compute_genesis_finality(_hash("g"), _validators(range(1)))
        records = (
            *state.checkpoints,
            *(
                type(state.checkpoints[0])(Checkpoint(e, _hash(f"{e}")), state.voters)
                for e in range(max(1, justified_epoch), target_epoch + 1)
            ),
        )
        view = FinalityState(
            Checkpoint(justified_epoch, _hash(f"{justified_epoch}")),
            state.finalized,
            state.voters,
            records,
        )
        vote = choose_vote(last, view)
        if vote is not None and vote != last:
            signed.append(vote)
        last = vote
    for i, x in enumerate(signed):
        for y in signed[i + 1 :]:
            assert x.target.epoch != y.target.epoch
            assert not (x.source.epoch < y.source.epoch and y.target.epoch < x.target.epoch)
            assert not (y.source.epoch < x.source.epoch and x.target.epoch < y.target.epoch)
