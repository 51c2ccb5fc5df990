"""``benchmarks/flat_memory.py``'s pure parts on made-up polls (no testnet): the sample
points, the figures at them, and the sync time of a node catching up."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[2] / "benchmarks"))

import flat_memory
from flat_memory import JOINER, Sample, Tick

NAMES = ["node-000", "node-001", "node-002"]


def make_sample(t: float, head: int, rss: float = 50.0) -> Sample:
    return Sample(t + 0.1, head, rss, max(0, head - 10), 60, is_validator=True, slot=head)


def make_tick(t: float, heads: dict[str, int | None], full: bool = True, rss: float = 50.0) -> Tick:
    samples = {
        n: None if h is None else make_sample(t, h, rss + i)
        for i, (n, h) in enumerate(heads.items())
    }
    return Tick(t, full, samples)


def test_the_majority_head_is_reached_by_more_than_half() -> None:
    tick = make_tick(0, {"node-000": 10, "node-001": 12, "node-002": 3, "node-003": None})
    assert flat_memory.majority_head(tick) == 10
    assert flat_memory.majority_head(tick, {"node-000"}) == 3
    assert flat_memory.majority_head(make_tick(0, {"node-000": None})) is None


def test_the_points_are_the_first_complete_poll_at_the_slot_and_the_last_before_the_kill() -> None:
    ticks = [
        make_tick(1, {"node-000": 199, "node-001": 200, "node-002": 200}),
        make_tick(2, {"node-000": 200, "node-001": None, "node-002": 201}),  # incomplete
        make_tick(3, {"node-000": 201, "node-001": 201, "node-002": 201}, full=False),
        make_tick(4, {"node-000": 202, "node-001": 202, "node-002": 202}),
        make_tick(6, {"node-000": 500, "node-001": 500, "node-002": 500}, rss=55),
        make_tick(8, {"node-000": 502, "node-001": 502, "node-002": None}),  # killed
    ]
    first, last = flat_memory.pick_points(ticks, NAMES, 200, kill_t=8)
    assert first is ticks[0]
    assert last is ticks[4]
    assert flat_memory.pick_points(ticks, NAMES, 200, kill_t=None)[1] is ticks[4]
    assert flat_memory.pick_points(ticks, NAMES, 600, kill_t=None) == (None, None)
    figures = flat_memory.describe(last, NAMES)
    assert figures["rss_mb_median"] == 56.0
    assert figures["rss_mb_max"] == 57.0
    assert figures["majority_head_slot"] == 500
    assert flat_memory.relative_change_pct(50.0, 55.0) == 10.0
    assert flat_memory.relative_change_pct(0.0, 55.0) is None


def test_the_sync_time_is_from_the_start_to_a_head_within_one_of_the_majority() -> None:
    ticks = [
        make_tick(9.0, {"node-000": 100, "node-001": 100, "node-002": 95}),  # before start
        make_tick(10.25, {"node-000": 101, "node-001": 101, "node-002": None}),
        make_tick(10.5, {"node-000": 101, "node-001": 101, "node-002": 50}),
        make_tick(11.0, {"node-000": 102, "node-001": 102, "node-002": 101, JOINER: 1}),
    ]
    assert flat_memory.find_sync_s(ticks, "node-002", since=10.0) == 1.1
    assert flat_memory.find_sync_s(ticks, "node-002", since=12.0) is None
    assert flat_memory.find_sync_s(ticks, JOINER, since=10.0) is None
    assert flat_memory.trace(ticks, "node-002", 10.0) == [
        [0.25, None, 101],
        [0.6, 50, 101],
        [1.1, 101, 102],
    ]


def test_a_status_without_a_head_is_no_sample() -> None:
    finality = {"finalized_slot": 3, "blocks_in_memory": 5}
    status: dict[str, Any] = {
        "head_slot": 7,
        "rss_mb": 40.5,
        "slot": 8,
        "is_validator": False,
        "finality": finality,
    }
    assert flat_memory.parse_status(status, 2.0) == Sample(2.0, 7, 40.5, 3, 5, False, 8)
    assert flat_memory.parse_status({"head_slot": None}, 2.0) is None
    assert flat_memory.parse_status("not a status", 2.0) is None
