"""Role election (paper Algorithm 2): determinism, fairness, and the Roles lookups."""

from __future__ import annotations

import hashlib
import random
from collections import Counter

import pytest
from scipy.stats import chisquare

from edgechain.consensus.roles import Role, Roles, compute_roles
from edgechain.crypto import bls
from edgechain.crypto.seed import compute_roles_seed
from edgechain.crypto.shuffle import compute_shuffled_index
from edgechain.types import PublicKey, Slot


def make_keys(count: int) -> list[PublicKey]:
    return [
        bls.sk_to_pk(bls.keygen(hashlib.sha256(b"roles test" + i.to_bytes(4, "big")).digest()))
        for i in range(count)
    ]


KEYS = make_keys(100)
PARENT_SEED = hashlib.sha256(b"roles test parent").digest()
COMMITTEE_SIZE = 10


def test_partition_and_sizes() -> None:
    roles = compute_roles(KEYS, PARENT_SEED, Slot(7), COMMITTEE_SIZE)
    assert len(roles.committee) == COMMITTEE_SIZE
    assert len(roles.validators) == len(KEYS) - 1 - COMMITTEE_SIZE
    assert sorted([roles.producer, *roles.committee, *roles.validators]) == sorted(KEYS)
    assert roles.size == len(KEYS)


def test_deterministic() -> None:
    first = compute_roles(KEYS, PARENT_SEED, Slot(3), COMMITTEE_SIZE)
    assert compute_roles(list(KEYS), bytes(PARENT_SEED), Slot(3), COMMITTEE_SIZE) == first
    assert hash(first) == hash(compute_roles(KEYS, PARENT_SEED, Slot(3), COMMITTEE_SIZE))


def test_input_order_independence() -> None:
    expected = compute_roles(KEYS, PARENT_SEED, Slot(11), COMMITTEE_SIZE)
    rng = random.Random(1234)
    for _ in range(5):
        scrambled = list(KEYS)
        rng.shuffle(scrambled)
        assert compute_roles(scrambled, PARENT_SEED, Slot(11), COMMITTEE_SIZE) == expected
    assert compute_roles(tuple(reversed(KEYS)), PARENT_SEED, Slot(11), COMMITTEE_SIZE) == expected


def test_matches_sorted_set_and_shuffled_index() -> None:
    """The documented definition: position i holds sorted[compute_shuffled_index(i, n, s)]."""
    ordered = sorted(KEYS)
    seed = compute_roles_seed(PARENT_SEED, Slot(5))
    roles = compute_roles(KEYS, PARENT_SEED, Slot(5), COMMITTEE_SIZE)
    expected = [ordered[compute_shuffled_index(i, len(KEYS), seed)] for i in range(len(KEYS))]
    assert [roles.producer, *roles.committee, *roles.validators] == expected


def _order(roles: Roles) -> list[PublicKey]:
    return [roles.producer, *roles.committee, *roles.validators]


def test_changes_with_slot_and_seed() -> None:
    base = compute_roles(KEYS, PARENT_SEED, Slot(1), COMMITTEE_SIZE)
    other_slot = compute_roles(KEYS, PARENT_SEED, Slot(2), COMMITTEE_SIZE)
    other_seed = compute_roles(KEYS, hashlib.sha256(b"other").digest(), Slot(1), COMMITTEE_SIZE)
    assert _order(base) != _order(other_slot)
    assert _order(base) != _order(other_seed)
    producers = {
        compute_roles(KEYS, PARENT_SEED, Slot(s), COMMITTEE_SIZE).producer for s in range(50)
    }
    assert len(producers) > 25


def test_get_role_and_committee_index() -> None:
    roles = compute_roles(KEYS, PARENT_SEED, Slot(9), COMMITTEE_SIZE)
    assert roles.get_role(roles.producer) is Role.PRODUCER
    assert roles.committee_index(roles.producer) is None
    for index, pk in enumerate(roles.committee):
        assert roles.get_role(pk) is Role.COMMITTEE
        assert roles.committee_index(pk) == index
    for pk in roles.validators:
        assert roles.get_role(pk) is Role.VALIDATOR
        assert roles.committee_index(pk) is None
    outsider = make_keys(101)[100]
    assert roles.get_role(outsider) is Role.NONE
    assert roles.committee_index(outsider) is None
    assert roles.get_role(b"") is Role.NONE
    counts = Counter(roles.get_role(pk) for pk in KEYS)
    assert counts == {Role.PRODUCER: 1, Role.COMMITTEE: 10, Role.VALIDATOR: 89}


def test_committee_smaller_than_requested() -> None:
    keys = KEYS[:4]
    roles = compute_roles(keys, PARENT_SEED, Slot(1), committee_size=10)
    assert len(roles.committee) == 3
    assert roles.validators == ()
    single = compute_roles(keys[:1], PARENT_SEED, Slot(1), committee_size=10)
    assert single.producer == keys[0]
    assert single.committee == () and single.validators == ()
    exact = compute_roles(KEYS[:11], PARENT_SEED, Slot(1), committee_size=10)
    assert len(exact.committee) == 10 and exact.validators == ()


def test_zero_committee() -> None:
    roles = compute_roles(KEYS, PARENT_SEED, Slot(1), committee_size=0)
    assert roles.committee == ()
    assert len(roles.validators) == len(KEYS) - 1


def test_committee_order_is_a_prefix_of_the_shuffle() -> None:
    small = compute_roles(KEYS, PARENT_SEED, Slot(4), committee_size=5)
    large = compute_roles(KEYS, PARENT_SEED, Slot(4), committee_size=20)
    assert small.producer == large.producer
    assert large.committee[:5] == small.committee


@pytest.mark.parametrize(
    ("keys", "seed", "committee_size"),
    [
        ([], PARENT_SEED, 3),
        ([KEYS[0], KEYS[1], KEYS[0]], PARENT_SEED, 3),
        ([PublicKey(b"\x01" * 47)], PARENT_SEED, 3),
        (KEYS[:5], PARENT_SEED, -1),
        (KEYS[:5], PARENT_SEED[:31], 3),
    ],
    ids=["empty", "duplicate", "short-key", "negative-committee", "short-seed"],
)
def test_invalid_inputs(keys: list[PublicKey], seed: bytes, committee_size: int) -> None:
    with pytest.raises(ValueError):
        compute_roles(keys, seed, Slot(1), committee_size)


def test_roles_reject_duplicates_and_are_frozen() -> None:
    with pytest.raises(ValueError):
        Roles(producer=KEYS[0], committee=(KEYS[1], KEYS[0]), validators=())
    with pytest.raises(ValueError):
        Roles(producer=KEYS[0], committee=(KEYS[1],), validators=(KEYS[1],))
    roles = Roles(producer=KEYS[0], committee=(KEYS[1],), validators=(KEYS[2],))
    with pytest.raises(AttributeError):
        roles.producer = KEYS[3]  # type: ignore[misc]
    assert "_committee_index" not in repr(roles)


# Acceptance check: over many slots every validator is elected producer, and sits on
# the committee, about equally often (chi-square goodness of fit, p > 0.01).
FAIRNESS_VALIDATORS = 100
FAIRNESS_SLOTS = 2000


@pytest.fixture(scope="module")
def many_slots() -> list[Roles]:
    return [
        compute_roles(KEYS[:FAIRNESS_VALIDATORS], PARENT_SEED, Slot(slot), COMMITTEE_SIZE)
        for slot in range(FAIRNESS_SLOTS)
    ]


def test_producer_distribution_is_uniform(many_slots: list[Roles]) -> None:
    counts = Counter(roles.producer for roles in many_slots)
    observed = [counts[pk] for pk in KEYS[:FAIRNESS_VALIDATORS]]
    assert sum(observed) == FAIRNESS_SLOTS
    assert chisquare(observed).pvalue > 0.01


def test_committee_distribution_is_uniform(many_slots: list[Roles]) -> None:
    counts = Counter(pk for roles in many_slots for pk in roles.committee)
    observed = [counts[pk] for pk in KEYS[:FAIRNESS_VALIDATORS]]
    assert sum(observed) == FAIRNESS_SLOTS * COMMITTEE_SIZE
    assert chisquare(observed).pvalue > 0.01


def test_first_committee_seat_distribution_is_uniform(many_slots: list[Roles]) -> None:
    # Seat 0 owns bit 0 of the signer bitfield; no validator should favour it.
    counts = Counter(roles.committee[0] for roles in many_slots)
    observed = [counts[pk] for pk in KEYS[:FAIRNESS_VALIDATORS]]
    assert chisquare(observed).pvalue > 0.01


def test_producer_distribution_across_parent_seeds() -> None:
    counts: Counter[PublicKey] = Counter()
    for block in range(FAIRNESS_SLOTS):
        parent_seed = hashlib.sha256(b"parent" + block.to_bytes(4, "big")).digest()
        counts[compute_roles(KEYS[:20], parent_seed, Slot(block + 1), 3).producer] += 1
    observed = [counts[pk] for pk in KEYS[:20]]
    assert chisquare(observed).pvalue > 0.01
