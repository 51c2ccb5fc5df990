"""Committee signer bitfields (paper §3.4: "aggregated votes" in the block header).

Bit ``i`` of the bitfield is ``(bitfield[i // 8] >> (i % 8)) & 1`` and stands for the
committee member at election index ``i``. The bitfield has exactly
``ceil(committee_size / 8)`` bytes and no bit set at or beyond ``committee_size``, so each
set of signers has one encoding.
"""

from __future__ import annotations

from collections.abc import Iterable


def get_bitfield_size(committee_size: int) -> int:
    return (committee_size + 7) // 8


def compute_bitfield(indices: Iterable[int], committee_size: int) -> bytes:
    out = bytearray(get_bitfield_size(committee_size))
    for i in indices:
        if not 0 <= i < committee_size:
            raise ValueError(f"signer index {i} outside committee of {committee_size}")
        out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def is_bitfield_well_formed(bitfield: bytes, committee_size: int) -> bool:
    if len(bitfield) != get_bitfield_size(committee_size):
        return False
    spare = len(bitfield) * 8 - committee_size
    return spare == 0 or bitfield[-1] >> (8 - spare) == 0


def get_signer_indices(bitfield: bytes) -> list[int]:
    return [
        byte_index * 8 + bit
        for byte_index, byte in enumerate(bitfield)
        if byte
        for bit in range(8)
        if byte >> bit & 1
    ]


def count_signers(bitfield: bytes) -> int:
    return sum(byte.bit_count() for byte in bitfield)


def is_majority(signers: int, committee_size: int) -> bool:
    """Strictly more than half of the elected committee (paper §3.4 "majority vote")."""
    return 2 * signers > committee_size


def get_tolerated_silent_members(committee_size: int) -> int:
    """How many members of a full committee may be silent with the others still a
    majority: 0 for committees of 1 and 2, 1 for 3 and 4. At the validator floor
    (``committee_size + 1`` validators, ``validator_set.compute_skip_exclusion``) a dead
    validator is never excluded and sits in every slot's roles, so with 0 here the chain
    makes no block until it returns."""
    return committee_size - (committee_size // 2 + 1)


def is_one_failure_fatal(validators: int, committee_size: int) -> bool:
    """Whether one dead validator stops a chain of ``validators`` until it returns: at
    or below the validator floor (``committee_size + 1``, where skip blocks exclude
    nobody) with a committee (everyone but the producer, on a small set) that has no
    member to spare."""
    if validators > committee_size + 1:
        return False
    members = min(committee_size, validators - 1)
    return members <= 0 or get_tolerated_silent_members(members) == 0
