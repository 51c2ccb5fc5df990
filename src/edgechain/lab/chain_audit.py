"""After a run, check that no node accepted an invalid block: every block in every
node's store is validated again, from that store's genesis, exactly as an honest
validator checks one (``consensus/block_validation.validate_full``: elected producer, VDF proof,
the plan recomputed, the aggregate signature over a committee majority), and must
pass. Blocks shared by several stores are checked once.

The nodes must have stopped (a store has one owner at a time).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgechain.chain.encoding import compute_block_hash, decode_block, decode_genesis
from edgechain.chain.store.block_store import BlockStore
from edgechain.consensus.block_validation import ValidationMode, validate_full
from edgechain.consensus.state import BlockState, Memo, apply_block, compute_genesis_state
from edgechain.errors import ValidationError
from edgechain.types import BlockHash


@dataclass
class AuditResult:
    stores: int = 0
    blocks_checked: int = 0
    """Distinct blocks validated."""
    blocks_stored: int = 0
    """Blocks over all stores (a block kept by N nodes counts N times)."""
    invalid: list[dict[str, Any]] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "stores": self.stores,
            "blocks_stored": self.blocks_stored,
            "distinct_blocks_checked": self.blocks_checked,
            "invalid": self.invalid,
            "unreadable": self.unreadable,
        }


def audit_stores(paths: Sequence[Path]) -> AuditResult:
    result = AuditResult()
    memo = Memo(os.urandom(32))
    mode = ValidationMode(check_attestation=True)
    states: dict[BlockHash, BlockState] = {}
    verdicts: dict[BlockHash, str | None] = {}
    for path in paths:
        try:
            _audit_store(path, memo, mode, states, verdicts, result)
        except Exception as exc:  # a store we cannot read is reported, not fatal
            result.unreadable.append(f"{path}: {exc!r}")
    result.blocks_checked = len(verdicts)
    return result


def _audit_store(
    path: Path,
    memo: Memo,
    mode: ValidationMode,
    states: dict[BlockHash, BlockState],
    verdicts: dict[BlockHash, str | None],
    result: AuditResult,
) -> None:
    with BlockStore(path) as store:
        record = store.get_genesis()
        if record is None:
            return  # never reached genesis: nothing accepted
        result.stores += 1
        genesis = decode_genesis(record.encoded)
        params = genesis.params
        genesis_state = compute_genesis_state(genesis)
        states.setdefault(genesis_state.block_hash, genesis_state)
        for meta in store.iter_blocks():
            result.blocks_stored += 1
            if meta.hash in verdicts:
                continue
            data = store.get_block(meta.hash)
            parent = states.get(meta.parent)
            if data is None or parent is None:
                verdicts[meta.hash] = "parent or bytes missing"
                result.invalid.append(_entry(path, meta.hash, meta.slot, "parent or bytes missing"))
                continue
            block = decode_block(data)
            if compute_block_hash(block) != meta.hash:
                # Signatures are over the hash: bytes stored under another block's hash
                # would otherwise be judged by that block's votes.
                reason = "stored under another hash"
                verdicts[meta.hash] = reason
                result.invalid.append(_entry(path, meta.hash, meta.slot, reason))
                continue
            try:
                validate_full(memo, params, parent, block, meta.hash, mode)
            except ValidationError as exc:
                verdicts[meta.hash] = str(exc)
                result.invalid.append(_entry(path, meta.hash, meta.slot, str(exc)))
                continue
            verdicts[meta.hash] = None
            states[meta.hash] = apply_block(parent, block, meta.hash, params)


def _entry(path: Path, block_hash: BlockHash, slot: int, reason: str) -> dict[str, Any]:
    return {"store": str(path), "block": block_hash.hex(), "slot": slot, "reason": reason}
