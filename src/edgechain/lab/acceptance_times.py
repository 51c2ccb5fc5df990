"""When each node first accepted each block, and the earliest node: what block
propagation (``lab/summary.py``) and a skip block's producer lag (``lab/skip_lag.py``)
are measured against. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgechain.lab.summary_records import BlockRecord


def get_first_acceptances(
    blocks: Mapping[str, Sequence[BlockRecord]],
) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    """(node name, block hash) -> that node's first accepted_ms, and block hash -> the
    earliest accepted_ms over every node. A node may list a block twice (accepted,
    then replayed after a restart): its first time counts."""
    first_seen: dict[tuple[str, str], int] = {}
    for name, records in blocks.items():
        for record in records:
            key = (name, record.hash)
            first_seen[key] = min(first_seen.get(key, record.accepted_ms), record.accepted_ms)
    earliest: dict[str, int] = {}
    for (_, block_hash), t_ms in first_seen.items():
        earliest[block_hash] = min(earliest.get(block_hash, t_ms), t_ms)
    return first_seen, earliest


__all__ = ["get_first_acceptances"]
