"""The down and quiet sets a plan uses are exactly the nodes the per-node rules name:
``compute_down_nodes`` and ``compute_quiet_nodes`` only skip the nodes seen too
recently for either (issue 13), which a stall cannot make silent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgechain.orchestrator.liveness import (
    QUIET_AFTER_SLOTS,
    Stall,
    compute_down_nodes,
    compute_quiet_nodes,
    get_silence_start,
    is_down,
    is_quorate,
)
from edgechain.types import NodeId, Slot

K = 12

SLOT = 100


@st.composite
def last_seens(draw: st.DrawFn) -> dict[NodeId, Slot]:
    """Nodes seen 0..3K slots ago, around the edges of K and the quiet threshold, and
    as many seen just now, so that the chain is quorate and the sets not empty."""
    ages = draw(st.lists(st.integers(0, 3 * K), max_size=12))
    seen = {NodeId(i.to_bytes(32, "big")): Slot(SLOT - age) for i, age in enumerate(ages)}
    for i in range(len(ages) + 1):
        seen[NodeId((100 + i).to_bytes(32, "big"))] = Slot(SLOT)
    return seen


stalls = st.one_of(
    st.just(Stall(Slot(0), Slot(0))),
    st.tuples(st.integers(SLOT - 3 * K, SLOT), st.integers(1, 3 * K)).map(
        lambda t: Stall(Slot(t[0]), Slot(t[0] + t[1]))
    ),
)


@given(last_seens(), stalls)
def test_the_down_set_is_every_node_the_rule_calls_down(
    last_seen: dict[NodeId, Slot], stall: Stall
) -> None:
    assert is_quorate(last_seen, SLOT, K)
    down = compute_down_nodes(last_seen, SLOT, K, stall)
    assert down == {n for n in last_seen if is_down(last_seen, n, SLOT, K, stall)}


@given(last_seens(), stalls)
def test_the_quiet_set_is_every_node_the_rule_calls_quiet(
    last_seen: dict[NodeId, Slot], stall: Stall
) -> None:
    quiet = compute_quiet_nodes(last_seen, SLOT, K, stall)
    expected = {
        n
        for n, at in last_seen.items()
        if QUIET_AFTER_SLOTS <= SLOT - get_silence_start(at, stall, K) < K
    }
    assert quiet == expected
