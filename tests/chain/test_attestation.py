"""The committee's majority rule and what it tolerates."""

from __future__ import annotations

from edgechain.chain.attestation import (
    get_tolerated_silent_members,
    is_majority,
    is_one_failure_fatal,
)


def test_tolerated_silent_members_is_the_most_a_majority_survives() -> None:
    for size in range(1, 40):
        tolerated = get_tolerated_silent_members(size)
        assert is_majority(size - tolerated, size)
        assert not is_majority(size - tolerated - 1, size)
    assert [get_tolerated_silent_members(n) for n in range(1, 8)] == [0, 0, 1, 1, 2, 2, 3]


def test_one_failure_is_fatal_only_at_the_floor_without_a_member_to_spare() -> None:
    # Above the floor a dead producer's skip block excludes it.
    assert not is_one_failure_fatal(5, 3) and not is_one_failure_fatal(4, 2)
    # At the floor: a committee of 3 spares one member, of 2 none.
    assert not is_one_failure_fatal(4, 3) and is_one_failure_fatal(3, 2)
    # Below it the committee is everyone but the producer: 3 validators, 2 members.
    assert is_one_failure_fatal(3, 3) and not is_one_failure_fatal(4, 8)
    assert is_one_failure_fatal(1, 3) and is_one_failure_fatal(2, 1)
