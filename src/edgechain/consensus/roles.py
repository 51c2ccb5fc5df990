"""Role election: paper Algorithm 2, as DESIGN.md ("Seed and roles") pins it down.

For slot ``s`` built on a parent with seed ``seed(p)``, every node computes locally, with
no message exchange:

1. the parent's validator set sorted by public key bytes (a canonical order that does
   not depend on how a node happens to store the set);
2. the swap-or-not shuffle of that list with ``SHA-256(b"roles" || seed(p) || s)``
   (:func:`edgechain.crypto.seed.compute_roles_seed`), position ``i`` holding
   ``sorted[compute_shuffled_index(i, n, seed)]``;
3. position 0 is the block producer, positions ``1 .. committee_size`` the committee in
   that order (the order defines the bits of the committee's signer bitfield), and the
   rest the validators.

With fewer than ``committee_size + 1`` validators the committee is simply everyone but
the producer (possibly nobody, for a single validator) and there are no plain
validators; deciding whether such a committee can reach a majority is the consensus
engine's business, not the election's.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from edgechain.crypto.seed import compute_roles_seed
from edgechain.crypto.shuffle import compute_shuffled_list
from edgechain.types import PUBLIC_KEY_SIZE, PublicKey, Slot


class Role(enum.Enum):
    """A node's role in one slot (paper §3.4: P, C, V; NONE if not in the validator set)."""

    PRODUCER = "producer"
    COMMITTEE = "committee"
    VALIDATOR = "validator"
    NONE = "none"


@dataclass(frozen=True)
class Roles:
    """The elected roles of one slot. All keys are distinct.

    ``committee`` is ordered: member ``i`` owns bit ``i`` of the signer bitfield.
    """

    producer: PublicKey
    committee: tuple[PublicKey, ...]
    validators: tuple[PublicKey, ...]
    _committee_index: Mapping[bytes, int] = field(init=False, repr=False, compare=False)
    _validators: frozenset[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        committee_index = {bytes(pk): i for i, pk in enumerate(self.committee)}
        validators = frozenset(bytes(pk) for pk in self.validators)
        everyone = {bytes(self.producer), *committee_index, *validators}
        if len(everyone) != 1 + len(self.committee) + len(self.validators):
            raise ValueError("a public key appears twice in the roles")
        # Frozen dataclass: precompute the O(1) lookups once, at construction.
        object.__setattr__(self, "_committee_index", committee_index)
        object.__setattr__(self, "_validators", validators)

    def committee_index(self, public_key: bytes) -> int | None:
        """Position of ``public_key`` in the committee (its bitfield bit), or ``None``."""
        return self._committee_index.get(bytes(public_key))

    def get_role(self, public_key: bytes) -> Role:
        key = bytes(public_key)
        if key == self.producer:
            return Role.PRODUCER
        if key in self._committee_index:
            return Role.COMMITTEE
        if key in self._validators:
            return Role.VALIDATOR
        return Role.NONE

    @property
    def size(self) -> int:
        """Number of validators the roles were drawn from."""
        return 1 + len(self.committee) + len(self.validators)


def _canonical_validator_set(public_keys: Sequence[PublicKey]) -> list[PublicKey]:
    """The validator set sorted by public key bytes; rejects duplicates and bad lengths."""
    ordered = sorted(PublicKey(bytes(pk)) for pk in public_keys)
    for pk in ordered:
        if len(pk) != PUBLIC_KEY_SIZE:
            raise ValueError(f"public key must be {PUBLIC_KEY_SIZE} bytes, got {len(pk)}")
    for previous, current in itertools.pairwise(ordered):
        if previous == current:
            raise ValueError(f"duplicate public key {current.hex()} in the validator set")
    return ordered


def compute_roles(
    public_keys: Sequence[PublicKey], parent_seed: bytes, slot: Slot, committee_size: int
) -> Roles:
    """Algorithm 2: elect the producer, committee and validators of ``slot``.

    ``public_keys`` is the validator set of the parent block, in any order;
    ``parent_seed`` is the parent's seed (:mod:`edgechain.crypto.seed`). Raises
    ``ValueError`` on an empty set, duplicate keys, keys that are not 48 bytes, a
    negative ``committee_size`` or a seed that is not 32 bytes.
    """
    if committee_size < 0:
        raise ValueError(f"committee size must be >= 0, got {committee_size}")
    ordered = _canonical_validator_set(public_keys)
    if not ordered:
        raise ValueError("cannot elect roles from an empty validator set")
    shuffled = compute_shuffled_list(ordered, compute_roles_seed(parent_seed, slot))
    return Roles(
        producer=shuffled[0],
        committee=tuple(shuffled[1 : 1 + committee_size]),
        validators=tuple(shuffled[1 + committee_size :]),
    )
