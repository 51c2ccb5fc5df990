"""Whether a skip block's excluded producer was following the chain at its slot.

A skip block excludes the slot's elected producer (§3.4). A producer that had not yet
accepted the block its slot builds on could not produce, whatever its CPU: it was
behind (a node included before it followed the chain, or one that fell behind). This
module measures that from the nodes' ``GET /blocks`` records (``lab/summary.py``
computes it with the chain's figures): how long after the first
node accepted the skip block's parent the excluded node accepted it (None: it never
did while it answered). Pure; the testnet summary feeds it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from edgechain.lab.acceptance_times import get_first_acceptances

if TYPE_CHECKING:
    from edgechain.lab.summary_records import BlockRecord, CanonicalBlock


@dataclass(frozen=True)
class ExcludedLag:
    slot: int
    excluded: str | None
    """The excluded node's name (its id's first 16 hex digits if no node has it)."""
    parent_late_ms: int | None
    """How long after the first node the excluded node accepted the parent; None if it
    never did (or did not answer)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "slot": self.slot,
            "excluded": self.excluded,
            "parent_late_ms": self.parent_late_ms,
        }


def compute_excluded_lags(
    canonical: Sequence[CanonicalBlock],
    blocks: Mapping[str, Sequence[BlockRecord]],
    names: Mapping[str, str],
) -> list[ExcludedLag]:
    """One entry per canonical skip block that has a parent block (not the genesis).

    ``blocks``: each node's records by node name; ``names``: node id (hex) to name."""
    first_seen, earliest = get_first_acceptances(blocks)
    lags = []
    for parent, block in pairwise(canonical):
        if not block.skip:
            continue
        excluded = block.excluded or ""
        node = names.get(excluded) or (excluded[:16] or None)
        at = first_seen.get((node or "", parent.hash))
        origin = earliest.get(parent.hash)
        late = at - origin if at is not None and origin is not None else None
        lags.append(ExcludedLag(block.slot, node, late))
    return lags


def count_behind(lags: Sequence[ExcludedLag], slot_ms: int) -> int:
    """Skip blocks whose excluded producer got the parent more than a slot after the
    first node, or never: it was behind the chain at its slot."""
    return sum(1 for lag in lags if lag.parent_late_ms is None or lag.parent_late_ms > slot_ms)


__all__ = ["ExcludedLag", "compute_excluded_lags", "count_behind"]
