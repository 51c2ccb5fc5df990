"""Who was elected to produce each slot of a finished run's canonical chain.

The HTTP API says who produced a block and whom a skip block excluded, but not who
*should* have produced a slot that ended empty or skipped. That is a pure function of
the chain (Algorithm 2): replay the canonical blocks from a stopped node's store into
chain states and elect the producer of every slot from its canonical parent. The
kill experiment uses it to check that a killed node's slots became skip blocks
excluding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from edgechain.chain.encoding import decode_block, decode_genesis
from edgechain.chain.model import AnyBlock, Genesis
from edgechain.chain.store.block_store import BlockStore
from edgechain.consensus.roles import compute_roles
from edgechain.consensus.state import BlockState, apply_block, compute_genesis_state
from edgechain.crypto.hashing import compute_node_id
from edgechain.errors import LocalError
from edgechain.types import BlockHash, Slot


class ElectionError(LocalError):
    """The store does not hold the chain the run reported."""


@dataclass(frozen=True)
class Election:
    """Who was elected for one slot (node ids, hex)."""

    producer: str
    committee: tuple[str, ...]


def compute_elections(
    genesis: Genesis, chain: Sequence[tuple[BlockHash, AnyBlock]], slots: Sequence[int]
) -> dict[int, Election]:
    """Elected producer and committee of each of ``slots`` along ``chain`` (canonical,
    genesis exclusive, in order). A slot is elected from the last block before it."""
    states: list[BlockState] = [compute_genesis_state(genesis)]
    for block_hash, block in chain:
        states.append(apply_block(states[-1], block, block_hash, genesis.params))
    size = genesis.params.committee_size
    elections = {}
    for slot in slots:
        parent = next(s for s in reversed(states) if s.slot < slot)
        roles = compute_roles(parent.validators.get_public_keys(), parent.seed, Slot(slot), size)
        elections[slot] = Election(
            producer=compute_node_id(roles.producer).hex(),
            committee=tuple(compute_node_id(k).hex() for k in roles.committee),
        )
    return elections


def compute_producers(
    genesis: Genesis, chain: Sequence[tuple[BlockHash, AnyBlock]], slots: Sequence[int]
) -> dict[int, str]:
    """Elected producer (node id hex) of each of ``slots`` along ``chain``."""
    return {s: e.producer for s, e in compute_elections(genesis, chain, slots).items()}


def load_chain(
    store_path: Path, chain_hashes: Sequence[str]
) -> tuple[Genesis, list[tuple[BlockHash, AnyBlock]]]:
    """Genesis and the listed blocks from a node's ``chain.db`` (node stopped)."""
    with BlockStore(store_path) as store:
        record = store.get_genesis()
        if record is None:
            raise ElectionError(f"{store_path}: no genesis stored")
        blocks = []
        for text in chain_hashes:
            block_hash = BlockHash(bytes.fromhex(text))
            data = store.get_block(block_hash)
            if data is None:
                raise ElectionError(f"{store_path}: block {text[:16]} not stored")
            blocks.append((block_hash, decode_block(data)))
        return decode_genesis(record.encoded), blocks


def load_producers(
    store_path: Path, chain_hashes: Sequence[str], slots: Sequence[int]
) -> dict[int, str]:
    genesis, chain = load_chain(store_path, chain_hashes)
    return compute_producers(genesis, chain, slots)


__all__ = [
    "Election",
    "ElectionError",
    "compute_elections",
    "compute_producers",
    "load_chain",
    "load_producers",
]
