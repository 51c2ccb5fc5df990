"""How late a skip block's excluded producer got the block its slot built on."""

from __future__ import annotations

from edgechain.lab.skip_lag import compute_excluded_lags, count_behind
from edgechain.lab.summary_records import BlockRecord, CanonicalBlock

IDS = {"aa" * 32: "node-001", "bb" * 32: "node-002", "cc" * 32: "node-003"}


def record(block: str, slot: int, accepted_ms: int, excluded: str | None = None) -> BlockRecord:
    return BlockRecord(block, slot, excluded is not None, 3, None, excluded, accepted_ms)


def test_the_excluded_producer_is_timed_against_the_first_node_to_accept_the_parent() -> None:
    canonical = [
        CanonicalBlock("h1", 1, False, "node-000", None),
        CanonicalBlock("s2", 2, True, None, "aa" * 32),  # node-001 got h1 at once
        CanonicalBlock("s3", 3, True, None, "bb" * 32),  # node-002 got s2 5 s late
        CanonicalBlock("s4", 4, True, None, "cc" * 32),  # node-003 never got s3
        CanonicalBlock("s5", 5, True, None, "dd" * 32),  # a node nobody knows
    ]
    blocks = {
        "node-000": [record("h1", 1, 2_000), record("s2", 2, 5_000), record("s3", 3, 7_000)],
        "node-001": [record("h1", 1, 2_300), record("h1", 1, 9_000)],  # replayed: first kept
        "node-002": [record("h1", 1, 2_100), record("s2", 2, 10_000)],
        "node-003": [record("h1", 1, 2_200)],
    }
    lags = compute_excluded_lags(canonical, blocks, IDS)
    assert [(lag.slot, lag.excluded, lag.parent_late_ms) for lag in lags] == [
        (2, "node-001", 300),
        (3, "node-002", 5_000),
        (4, "node-003", None),
        (5, "dd" * 8, None),
    ]
    # Behind: got the parent more than a slot late, or never.
    assert count_behind(lags, 2_000) == 3
    assert count_behind(lags, 6_000) == 2
