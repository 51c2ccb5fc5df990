"""When the chaos harness counts the nodes' heads as converged (pure)."""

from __future__ import annotations

from edgechain.lab.chaos_watch import HeadView


def _view(**heads: tuple[str | None, int | None]) -> HeadView:
    return HeadView(heads, {})


def test_one_head_everywhere_is_converged() -> None:
    view = _view(a=("h9", 9), b=("h9", 9))
    assert view.is_converged(["a", "b"])


def test_a_node_that_did_not_answer_is_not_converged() -> None:
    assert not _view(a=("h9", 9)).is_converged(["a", "b"])
    assert not _view().is_converged([])


def test_a_node_a_block_behind_on_the_same_chain_is_converged() -> None:
    view = _view(a=("h9", 9), b=("h8", 8), c=("h9", 9))
    assert view.get_leader(["a", "b", "c"]) == "a"
    assert view.is_converged(["a", "b", "c"], chain={"h7", "h8", "h9"})
    assert not view.is_converged(["a", "b", "c"])  # without the leader's chain: no


def test_a_node_on_another_branch_or_far_behind_is_not() -> None:
    chain = {"h5", "h6", "h7", "h8", "h9"}
    assert not _view(a=("h9", 9), b=("x8", 8)).is_converged(["a", "b"], chain)
    assert not _view(a=("h9", 9), b=("h6", 6)).is_converged(["a", "b"], chain)
