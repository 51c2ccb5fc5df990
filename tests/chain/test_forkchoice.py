"""Fork choice: the paper's fork scenarios (§3.5, Fig. 5) and tree properties."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgechain.chain.forkchoice import (
    ForkChoice,
    ForkChoiceError,
    Reorg,
    UnknownBlockError,
    UnknownParentError,
)
from edgechain.errors import LocalError
from edgechain.types import BlockHash, Slot

COMMITTEE_SIZE = 5
"""Committee of the scenario tests: a majority is 3 signers."""


def h(name: str) -> BlockHash:
    """A readable block name turned into a 32-byte hash."""
    return BlockHash(hashlib.sha256(name.encode()).digest())


GENESIS = h("genesis")


def make_tree() -> ForkChoice:
    """genesis <- A (slot 1, whole committee signed): the agreed block n+1 of Fig. 5."""
    tree = ForkChoice(GENESIS)
    tree.add(h("A"), GENESIS, Slot(1), COMMITTEE_SIZE)
    return tree


def apply_reorg(path: list[BlockHash], reorg: Reorg) -> list[BlockHash]:
    """Undo and redo blocks on a chain path the way a node would."""
    path = list(path)
    for block in reorg.revert:
        assert path.pop() == block
    assert path[-1] == reorg.common_ancestor
    return path + list(reorg.apply)


def get_path(tree: ForkChoice, block: BlockHash) -> list[BlockHash]:
    """Root ... block, oldest first."""
    return [*reversed(tree.get_ancestors(block)), block]


# -- the paper's fork scenarios ----------------------------------------------------


def test_case_1i_minority_abandons_skip_block_when_real_block_arrives() -> None:
    # Block b for slot 2 reaches only 3 of 5 committee members in time: it passes the
    # majority vote. The other 2 (C_f < |C|/2) sign a skip block sb; their tip is sb.
    minority = make_tree()
    minority.add(h("sb2"), h("A"), Slot(2), 2)
    assert minority.get_head() == h("sb2")
    old_head = minority.get_head()

    # The real block arrives: 3 attestations beat the skip block's 2.
    minority.add(h("b2"), h("A"), Slot(2), 3)
    assert minority.get_head() == h("b2")
    reorg = minority.compute_reorg(old_head, minority.get_head())
    assert reorg == Reorg(common_ancestor=h("A"), revert=(h("sb2"),), apply=(h("b2"),))


def test_case_1i_minority_that_built_further_on_skip_blocks_still_converges() -> None:
    # C_f tries to build on sb, cannot reach a majority, and adds another skip block.
    # The majority chain keeps gathering full committees and overtakes.
    minority = make_tree()
    minority.add(h("sb2"), h("A"), Slot(2), 2)
    minority.add(h("sb3"), h("sb2"), Slot(3), 2)
    old_head = minority.get_head()
    assert old_head == h("sb3")

    minority.add(h("b2"), h("A"), Slot(2), 3)
    assert minority.get_head() == h("sb3"), "4 minority attestations still outweigh 3"
    minority.add(h("b3"), h("b2"), Slot(3), COMMITTEE_SIZE)
    assert minority.get_head() == h("b3")

    reorg = minority.compute_reorg(old_head, minority.get_head())
    assert reorg.common_ancestor == h("A")
    assert reorg.revert == (h("sb3"), h("sb2"))
    assert reorg.apply == (h("b2"), h("b3"))
    assert not reorg.is_extension()


def test_case_1ii_majority_skip_block_is_no_fork() -> None:
    # C_f > |C|/2: b does not pass the vote and is never accepted; sb has a majority.
    # Every node sees the same tree, and moving to sb is a plain extension.
    nodes = [make_tree() for _ in range(3)]
    for node in nodes:
        node.add(h("sb2"), h("A"), Slot(2), 3)
        assert node.get_head() == h("sb2")
        reorg = node.compute_reorg(h("A"), node.get_head())
        assert reorg.is_extension()
        assert reorg.apply == (h("sb2"),)
    assert len({node.get_head() for node in nodes}) == 1


@pytest.mark.parametrize(("block_weight", "skip_weight"), [(4, 3), (3, 4), (3, 3)])
def test_case_2_race_between_block_and_skip_block(block_weight: int, skip_weight: int) -> None:
    # b's attestations were aggregated in time but b propagated late, so some nodes
    # gossiped the skip block too. Nodes see the two in opposite orders; they must
    # agree on the head once both arrived, whatever the order.
    first_b, first_sb = make_tree(), make_tree()
    first_b.add(h("b2"), h("A"), Slot(2), block_weight)
    first_sb.add(h("sb2"), h("A"), Slot(2), skip_weight)
    first_b.add(h("sb2"), h("A"), Slot(2), skip_weight)
    first_sb.add(h("b2"), h("A"), Slot(2), block_weight)

    if block_weight != skip_weight:
        expected = h("b2") if block_weight > skip_weight else h("sb2")
    else:
        expected = min(h("b2"), h("sb2"))
    assert first_b.get_head() == first_sb.get_head() == expected

    # The next block on the winning branch settles it for good.
    first_sb.add(h("c3"), expected, Slot(3), COMMITTEE_SIZE)
    assert first_sb.get_head() == h("c3")


def test_reorg_to_heavier_branch_and_back() -> None:
    # Fig. 5: two blocks at height 2 both reference block n+1 (A); the branches then
    # grow independently and overtake each other.
    tree = make_tree()
    tree.add(h("x2"), h("A"), Slot(2), 3)
    tree.add(h("y3"), h("A"), Slot(3), 2)
    assert tree.get_head() == h("x2")

    tree.add(h("y4"), h("y3"), Slot(4), 3)  # y: 5 > x: 3
    assert tree.get_head() == h("y4")
    to_y = tree.compute_reorg(h("x2"), h("y4"))
    assert to_y == Reorg(h("A"), revert=(h("x2"),), apply=(h("y3"), h("y4")))

    tree.add(h("x5"), h("x2"), Slot(5), 4)  # x: 7 > y: 5
    assert tree.get_head() == h("x5")
    back_to_x = tree.compute_reorg(h("y4"), h("x5"))
    assert back_to_x == Reorg(h("A"), revert=(h("y4"), h("y3")), apply=(h("x2"), h("x5")))

    path = get_path(tree, h("x2"))
    path = apply_reorg(path, to_y)
    assert path == get_path(tree, h("y4"))
    assert apply_reorg(path, back_to_x) == get_path(tree, h("x5"))


def test_lowest_hash_breaks_ties_whatever_the_arrival_order() -> None:
    low, high = sorted([h("p"), h("q")])
    for order in ([low, high], [high, low]):
        tree = make_tree()
        for block in order:
            tree.add(block, h("A"), Slot(2), 3)
        assert tree.get_head() == low


def test_zero_weight_child_of_head_that_loses_the_tie_break() -> None:
    # The one non-O(1) case: the head gets a zero-weight child whose hash is higher
    # than another equally heavy leaf.
    tree = make_tree()
    low, mid, high = sorted([h("r"), h("s"), h("t")])
    tree.add(low, h("A"), Slot(2), 3)
    tree.add(mid, h("A"), Slot(2), 3)
    assert tree.get_head() == low
    tree.add(high, low, Slot(3), 0)
    assert tree.get_head() == mid


# -- API behaviour -----------------------------------------------------------------


def test_unknown_parent_is_a_local_error() -> None:
    tree = make_tree()
    with pytest.raises(UnknownParentError) as info:
        tree.add(h("orphan"), h("missing"), Slot(5), 3)
    assert isinstance(info.value, LocalError)
    assert not tree.is_known(h("orphan"))


def test_adding_a_known_block_is_a_no_op() -> None:
    tree = make_tree()
    assert not tree.add(h("A"), GENESIS, Slot(1), 1)
    assert tree.get_weight(h("A")) == COMMITTEE_SIZE
    assert not tree.add(GENESIS, h("anything"), Slot(0), 0)
    assert len(tree) == 2


def test_rejects_conflicting_re_add_bad_slot_and_negative_weight() -> None:
    tree = make_tree()
    with pytest.raises(ForkChoiceError):
        tree.add(h("A"), GENESIS, Slot(7), COMMITTEE_SIZE)
    with pytest.raises(ForkChoiceError):
        tree.add(h("same-slot"), h("A"), Slot(1), 3)
    with pytest.raises(ForkChoiceError):
        tree.add(h("negative"), h("A"), Slot(2), -1)
    assert len(tree) == 2


def test_queries() -> None:
    tree = make_tree()
    tree.add(h("b"), h("A"), Slot(3), 4)
    tree.add(h("c"), h("A"), Slot(2), 1)
    assert tree.get_weight(h("b")) == COMMITTEE_SIZE + 4
    assert tree.get_block_weight(h("b")) == 4
    assert tree.get_slot(h("b")) == 3
    assert tree.get_parent(h("b")) == h("A")
    assert tree.get_parent(GENESIS) is None
    assert set(tree.get_children(h("A"))) == {h("b"), h("c")}
    assert tree.get_leaves() == {h("b"), h("c")}
    assert tree.get_ancestors(h("b")) == (h("A"), GENESIS)
    assert tree.get_ancestors(GENESIS) == ()
    assert tree.is_ancestor(GENESIS, h("b"))
    assert tree.is_ancestor(h("b"), h("b"))
    assert not tree.is_ancestor(h("c"), h("b"))
    assert not tree.is_ancestor(h("b"), h("A"))
    assert tree.get_common_ancestor(h("b"), h("c")) == h("A")
    assert tree.get_common_ancestor(h("b"), GENESIS) == GENESIS
    assert tree.compute_reorg(h("b"), h("b")) == Reorg(h("b"), (), ())
    for query in (tree.get_weight, tree.get_slot, tree.get_parent, tree.get_ancestors):
        with pytest.raises(UnknownBlockError):
            query(h("missing"))


def test_prune_drops_branches_not_descending_from_finalized() -> None:
    tree = make_tree()
    tree.add(h("x2"), h("A"), Slot(2), 3)
    tree.add(h("x3"), h("x2"), Slot(3), 3)
    tree.add(h("y2"), h("A"), Slot(2), 4)
    tree.add(h("y3"), h("y2"), Slot(3), 4)
    assert tree.get_head() == h("y3")

    dropped = tree.prune(h("x2"))
    assert dropped == {GENESIS, h("A"), h("y2"), h("y3")}
    assert tree.get_root() == h("x2")
    assert tree.get_head() == h("x3"), "the head was on a dropped branch"
    assert tree.get_parent(h("x2")) is None
    assert tree.get_ancestors(h("x3")) == (h("x2"),)
    assert tree.get_weight(h("x3")) == COMMITTEE_SIZE + 6, "weights still count from genesis"
    with pytest.raises(UnknownParentError):
        tree.add(h("y4"), h("y3"), Slot(4), 5)
    tree.add(h("x4"), h("x3"), Slot(4), 1)
    assert tree.get_head() == h("x4")


def test_long_chain_stays_fast() -> None:
    # O(1) per add: 50 000 blocks on two competing branches would take minutes if
    # the head were recomputed by scanning.
    tree = ForkChoice(GENESIS)
    tips = [GENESIS, GENESIS]
    for slot in range(1, 25_001):
        for side in (0, 1):
            block = BlockHash(side.to_bytes(1, "big") + slot.to_bytes(31, "big"))
            tree.add(block, tips[side], Slot(slot), 3 + side)
            tips[side] = block
    assert tree.get_head() == tips[1]
    reorg = tree.compute_reorg(tips[0], tips[1])
    assert len(reorg.revert) == len(reorg.apply) == 25_000


# -- properties on random trees ----------------------------------------------------


@dataclass(frozen=True)
class NewBlock:
    parent_index: int
    slot_gap: int
    weight: int
    block: BlockHash


@st.composite
def random_trees(draw: st.DrawFn) -> list[NewBlock]:
    """Blocks in an order where each parent comes first (hashes are 2 bytes so that
    weight ties, and so hash tie breaks, are frequent)."""
    hashes = draw(
        st.lists(
            st.binary(min_size=2, max_size=2),
            min_size=1,
            max_size=40,
            unique=True,
        )
    )
    return [
        NewBlock(
            parent_index=draw(st.integers(min_value=0, max_value=index)),
            slot_gap=draw(st.integers(min_value=1, max_value=3)),
            weight=draw(st.integers(min_value=0, max_value=3)),
            block=BlockHash(block),
        )
        for index, block in enumerate(hashes)
    ]


def build(blocks: list[NewBlock]) -> tuple[ForkChoice, list[BlockHash]]:
    tree = ForkChoice(GENESIS)
    order = [GENESIS]
    for new in blocks:
        parent = order[new.parent_index]
        tree.add(new.block, parent, Slot(tree.get_slot(parent) + new.slot_gap), new.weight)
        order.append(new.block)
        assert_head_is_best_leaf(tree, order)
    return tree, order


def get_reference_weight(tree: ForkChoice, block: BlockHash) -> int:
    return sum(tree.get_block_weight(b) for b in get_path(tree, block))


def assert_head_is_best_leaf(tree: ForkChoice, blocks: list[BlockHash]) -> None:
    """The head, recomputed by brute force from scratch."""
    leaves = [b for b in blocks if not tree.get_children(b)]
    assert tree.get_leaves() == set(leaves)
    best_weight = max(get_reference_weight(tree, b) for b in blocks)
    heaviest = [b for b in leaves if get_reference_weight(tree, b) == best_weight]
    assert tree.get_head() == min(heaviest)
    assert tree.get_weight(tree.get_head()) == best_weight


@settings(max_examples=200, deadline=None)
@given(random_trees())
def test_head_is_heaviest_leaf_with_lowest_hash(blocks: list[NewBlock]) -> None:
    build(blocks)  # checks after every add


@settings(max_examples=200, deadline=None)
@given(random_trees(), st.data())
def test_reorg_turns_one_path_into_the_other(blocks: list[NewBlock], data: st.DataObject) -> None:
    tree, order = build(blocks)
    a = data.draw(st.sampled_from(order))
    b = data.draw(st.sampled_from(order))
    reorg = tree.compute_reorg(a, b)
    assert apply_reorg(get_path(tree, a), reorg) == get_path(tree, b)
    assert tree.is_ancestor(reorg.common_ancestor, a)
    assert tree.is_ancestor(reorg.common_ancestor, b)
    # Newest common block: the first blocks of the two sides differ.
    if reorg.revert and reorg.apply:
        assert reorg.revert[-1] != reorg.apply[0]
    assert tree.is_ancestor(a, b) == (not reorg.revert)


@settings(max_examples=100, deadline=None)
@given(random_trees(), st.data())
def test_prune_keeps_exactly_the_descendants(blocks: list[NewBlock], data: st.DataObject) -> None:
    tree, order = build(blocks)
    finalized = data.draw(st.sampled_from(order))
    descendants = [b for b in order if tree.is_ancestor(finalized, b)]
    weights = {b: tree.get_weight(b) for b in descendants}
    dropped = tree.prune(finalized)
    assert dropped == set(order) - set(descendants)
    assert len(tree) == len(descendants)
    assert {b: tree.get_weight(b) for b in descendants} == weights
    leaves = [b for b in descendants if not tree.get_children(b)]
    best = min(leaves, key=lambda b: (-weights[b], b))
    assert tree.get_head() == best
