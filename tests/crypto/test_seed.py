"""Seed derivations and hashing helpers: exact byte layouts and input checks."""

from __future__ import annotations

import hashlib

import pytest

from edgechain.crypto.hashing import compute_node_id, sha256
from edgechain.crypto.seed import (
    compute_block_seed,
    compute_genesis_seed,
    compute_roles_seed,
    compute_skip_seed,
)
from edgechain.types import PublicKey, Slot

PARENT = hashlib.sha256(b"parent").digest()


def test_sha256_concatenates() -> None:
    assert sha256() == hashlib.sha256(b"").digest()
    assert sha256(b"ab", b"", b"c") == hashlib.sha256(b"abc").digest()


def test_node_id() -> None:
    pk = PublicKey(bytes(range(48)))
    assert compute_node_id(pk) == hashlib.sha256(bytes(range(48))).digest()
    with pytest.raises(ValueError):
        compute_node_id(PublicKey(b"\x00" * 47))


def test_block_seed_layout() -> None:
    output = bytes(range(100))
    assert compute_block_seed(output) == hashlib.sha256(output).digest()
    for bad in (b"", bytes(99), bytes(101), bytes(200)):
        with pytest.raises(ValueError):
            compute_block_seed(bad)


def test_skip_seed_layout() -> None:
    expected = hashlib.sha256(PARENT + b"skip" + bytes.fromhex("0000000000000102")).digest()
    assert compute_skip_seed(PARENT, Slot(0x102)) == expected


def test_genesis_seed_layout() -> None:
    genesis = bytes(range(32))
    assert compute_genesis_seed(genesis) == hashlib.sha256(b"genesis" + genesis).digest()
    with pytest.raises(ValueError):
        compute_genesis_seed(bytes(31))


def test_roles_seed_layout() -> None:
    expected = hashlib.sha256(b"roles" + PARENT + bytes.fromhex("00000000000000ff")).digest()
    assert compute_roles_seed(PARENT, Slot(255)) == expected


def test_slot_is_big_endian_u64() -> None:
    top = (1 << 64) - 1
    assert compute_roles_seed(PARENT, Slot(top)) == sha256(b"roles", PARENT, b"\xff" * 8)
    for bad in (-1, 1 << 64):
        with pytest.raises(ValueError):
            compute_roles_seed(PARENT, Slot(bad))
        with pytest.raises(ValueError):
            compute_skip_seed(PARENT, Slot(bad))


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33)])
def test_parent_seed_length(bad: bytes) -> None:
    with pytest.raises(ValueError):
        compute_roles_seed(bad, Slot(1))
    with pytest.raises(ValueError):
        compute_skip_seed(bad, Slot(1))


def test_domain_separation_and_slot_sensitivity() -> None:
    seeds = {
        compute_skip_seed(PARENT, Slot(1)),
        compute_skip_seed(PARENT, Slot(2)),
        compute_roles_seed(PARENT, Slot(1)),
        compute_roles_seed(PARENT, Slot(2)),
        compute_genesis_seed(PARENT),
        compute_block_seed(PARENT + bytes(68)),
    }
    assert len(seeds) == 6
    assert all(len(seed) == 32 for seed in seeds)
