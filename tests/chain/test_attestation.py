"""The committee's majority rule and what it tolerates."""

from __future__ import annotations

from edgechain.chain.attestation import get_tolerated_silent_members, is_majority


def test_tolerated_silent_members_is_the_most_a_majority_survives() -> None:
    for size in range(1, 40):
        tolerated = get_tolerated_silent_members(size)
        assert is_majority(size - tolerated, size)
        assert not is_majority(size - tolerated - 1, size)
    assert [get_tolerated_silent_members(n) for n in range(1, 8)] == [0, 0, 1, 1, 2, 2, 3]
