"""Per-block randomness: the seeds that drive role election (DESIGN.md, "Seed and roles").

Paper §3.4 / Algorithm 2: the VDF output of block ``n`` is the entropy pool for the
roles of the slot built on it. These functions fix the exact byte layouts so that every
node derives the same 32-byte seeds. All integers are fixed-width (no length prefixes
are needed because every field but the last has a fixed size).

========================  ======================================================
seed                      SHA-256 input (``||`` is concatenation)
========================  ======================================================
block seed                ``vdf_output`` (100 bytes, the VDF output form)
skip-block seed           ``parent_seed (32) || b"skip" || slot (u64 big-endian)``
genesis seed              ``b"genesis" || genesis_hash (32)``
roles seed for a slot     ``b"roles" || parent_seed (32) || slot (u64 big-endian)``
========================  ======================================================

The domain tags differ in length and position, so no preimage of one kind can be
reinterpreted as another.
"""

from __future__ import annotations

from edgechain.crypto.hashing import sha256
from edgechain.crypto.vdf import OUTPUT_SIZE as VDF_OUTPUT_SIZE
from edgechain.types import HASH_SIZE

SEED_SIZE = HASH_SIZE
_MAX_SLOT = (1 << 64) - 1


def _slot_bytes(slot: int) -> bytes:
    if not 0 <= slot <= _MAX_SLOT:
        raise ValueError(f"slot {slot} does not fit an unsigned 64-bit integer")
    return slot.to_bytes(8, "big")


def _check_seed(seed: bytes, name: str) -> None:
    if len(seed) != SEED_SIZE:
        raise ValueError(f"{name} must be {SEED_SIZE} bytes, got {len(seed)}")


def compute_block_seed(vdf_output: bytes) -> bytes:
    """Seed of a regular block: ``SHA-256(vdf_output)``.

    ``vdf_output`` is the 100-byte output form of the block's VDF (not the proof). Only
    canonical encodings pass :func:`edgechain.crypto.vdf.verify`, so a producer cannot
    grind the seed by re-encoding the same VDF output.
    """
    if len(vdf_output) != VDF_OUTPUT_SIZE:
        raise ValueError(f"VDF output must be {VDF_OUTPUT_SIZE} bytes, got {len(vdf_output)}")
    return sha256(vdf_output)


def compute_skip_seed(parent_seed: bytes, slot: int) -> bytes:
    """Seed of a skip block (which carries no VDF): ``SHA-256(parent_seed || b"skip" || slot)``.

    ``slot`` is the skip block's own slot as an 8-byte big-endian unsigned integer, so
    consecutive skip blocks on the same parent chain still get distinct seeds.
    """
    _check_seed(parent_seed, "parent seed")
    return sha256(parent_seed, b"skip", _slot_bytes(slot))


def compute_genesis_seed(genesis_hash: bytes) -> bytes:
    """Seed of the genesis block: ``SHA-256(b"genesis" || genesis_hash)`` (hash: 32 bytes)."""
    if len(genesis_hash) != HASH_SIZE:
        raise ValueError(f"genesis hash must be {HASH_SIZE} bytes, got {len(genesis_hash)}")
    return sha256(b"genesis", genesis_hash)


def compute_roles_seed(parent_seed: bytes, slot: int) -> bytes:
    """Shuffle seed for the roles of ``slot`` built on a parent with ``parent_seed``.

    ``SHA-256(b"roles" || parent_seed || slot)``, the slot as an 8-byte big-endian
    unsigned integer. Mixing the slot in gives a fresh election when slots are skipped
    on the same parent (Algorithm 2 draws per slot, not per block).
    """
    _check_seed(parent_seed, "parent seed")
    return sha256(b"roles", parent_seed, _slot_bytes(slot))
